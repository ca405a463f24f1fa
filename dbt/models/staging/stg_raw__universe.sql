with source as (
    select * from {{ source('raw', 'universe') }}
),

final as (
    select
        market,
        ticker,
        name as company_name,
        sector,
        price_limit_pct
    from source
)

select * from final
