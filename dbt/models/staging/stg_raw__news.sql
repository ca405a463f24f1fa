with source as (
    select * from {{ source('raw', 'news') }}
),

final as (
    select
        market,
        news_id,
        ticker,
        published_at,
        headline,
        body,
        source as news_source
    from source
)

select * from final
