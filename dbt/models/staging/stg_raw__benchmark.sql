with source as (
    select * from {{ source('raw', 'benchmark') }}
),

final as (
    select
        market,
        "date" as benchmark_date,
        close as benchmark_close,
        kind as benchmark_kind
    from source
)

select * from final
