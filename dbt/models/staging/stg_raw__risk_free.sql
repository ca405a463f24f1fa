with source as (
    select * from {{ source('raw', 'risk_free') }}
),

final as (
    select
        market,
        "date",
        annual_rate
    from source
)

select * from final
