-- The latest report visible at each snapshot's cutoff: published strictly before it.
with grid as (
    select market, ticker, decision_date, information_cutoff
    from {{ ref('int_snapshot_grid') }}
),

final as (
    select
        grid.market,
        grid.ticker,
        grid.decision_date,
        timeline.report_id,
        timeline.published_at as report_published_at,
        struct_pack(
            report_id := timeline.report_id,
            fiscal_year := timeline.fiscal_year,
            period_end := timeline.period_end,
            published_at := timeline.published_at,
            revenue := timeline.revenue,
            net_income := timeline.net_income,
            total_assets := timeline.total_assets,
            total_equity := timeline.total_equity,
            eps := timeline.eps,
            operating_cash_flow := timeline.operating_cash_flow,
            net_income_growth := timeline.net_income_growth,
            summary := timeline.summary
        ) as report
    from grid
    asof inner join {{ ref('int_report_timeline') }} as timeline
        on grid.market = timeline.market
        and grid.ticker = timeline.ticker
        and grid.information_cutoff > timeline.known_from
)

select * from final
