with source as (
    select * from {{ source('raw', 'benchmark') }}
),

final as (
    select
        market,
        "date" as benchmark_date,
        close as benchmark_close
    from source
)

select * from final
