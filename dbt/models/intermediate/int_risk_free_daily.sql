-- The risk-free return of each session of each market's calendar (DESIGN §8): the annual
-- rate of the optional daily series (stg_raw__risk_free) as of the session (its latest rate
-- on or before the date), else the market's constant (market_rules.risk_free_rate),
-- converted with the market's sessions a year: (1 + annual) ^ (1 / sessions_per_year) - 1.
-- The backtest credits it to idle cash; the metrics subtract it (macros/metrics.sql).
with sessions as (
    select market, session_date from {{ ref('stg_raw__sessions') }}
),

conventions as (
    select * from {{ ref('int_market_conventions') }}
),

series as (
    select market, "date", annual_rate from {{ ref('stg_raw__risk_free') }}
),

rates as (
    select
        sessions.market,
        sessions.session_date,
        series.annual_rate as series_rate
    from sessions
    asof left join series
        on sessions.market = series.market and sessions.session_date >= series."date"
),

final as (
    select
        rates.market,
        rates.session_date as "date",
        coalesce(rates.series_rate, conventions.risk_free_rate) as annual_rate,
        case when rates.series_rate is null then 'constant' else 'series' end as rate_source,
        power(
            1 + coalesce(rates.series_rate, conventions.risk_free_rate),
            1 / conventions.sessions_per_year
        ) - 1 as risk_free_return
    from rates
    inner join conventions on rates.market = conventions.market
)

select * from final
