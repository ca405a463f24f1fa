with source as (
    select * from {{ source('raw', 'reports') }}
),

final as (
    select
        market,
        report_id,
        ticker,
        fiscal_year,
        period_end,
        published_at,
        revenue,
        net_income,
        total_assets,
        total_equity,
        eps,
        operating_cash_flow,
        summary
    from source
)

select * from final
