with source as (
    select * from {{ source('raw', 'universe') }}
),

final as (
    select
        market,
        ticker,
        name as company_name,
        sector,
        price_limit_pct,
        -- Index membership, both ends inclusive; null is open-ended on that side.
        member_from,
        member_to
    from source
)

select * from final
