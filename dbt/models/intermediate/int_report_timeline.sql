-- For each ticker, which annual report is the latest known from each publication on:
-- the highest fiscal year, then the latest publication of it (a restatement replaces the
-- original from its own publication time). Never keyed on period end.
with reports as (
    select * from {{ ref('stg_raw__reports') }}
),

with_prior_year as (
    -- The prior fiscal year's figure as known when this report was published.
    select
        reports.*,
        prior.net_income as prior_net_income
    from reports
    asof left join reports as prior
        on reports.market = prior.market
        and reports.ticker = prior.ticker
        and reports.fiscal_year - 1 = prior.fiscal_year
        and reports.published_at >= prior.published_at
),

versions as (
    select
        market,
        ticker,
        published_at,
        struct_pack(
            report_id := report_id,
            fiscal_year := fiscal_year,
            period_end := period_end,
            published_at := published_at,
            revenue := revenue,
            net_income := net_income,
            total_assets := total_assets,
            total_equity := total_equity,
            eps := eps,
            operating_cash_flow := operating_cash_flow,
            net_income_growth := case
                when prior_net_income is not null and prior_net_income <> 0
                    then (net_income - prior_net_income) / abs(prior_net_income)
            end,
            summary := summary
        ) as report,
        struct_pack(fiscal_year := fiscal_year, published_at := published_at) as precedence
    from with_prior_year
),

best as (
    select
        market,
        ticker,
        published_at as known_from,
        arg_max(report, precedence) over (
            partition by market, ticker
            order by published_at
            rows between unbounded preceding and current row
        ) as report
    from versions
),

final as (
    select market, ticker, known_from, unnest(report)
    from best
)

select * from final
