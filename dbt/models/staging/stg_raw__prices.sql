with source as (
    select * from {{ source('raw', 'prices') }}
),

final as (
    select
        market,
        ticker,
        "date" as price_date,
        open,
        high,
        low,
        close,
        volume,
        adj_factor
    from source
)

select * from final
