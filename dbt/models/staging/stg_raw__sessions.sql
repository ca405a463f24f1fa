with source as (
    select * from {{ source('raw', 'sessions') }}
),

final as (
    select
        market,
        session_date
    from source
)

select * from final
