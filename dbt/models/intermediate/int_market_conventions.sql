-- One row per ingested market (one with a calendar): the metrics' annualisation (sessions a year) and the constant
-- risk-free rate (DESIGN §8). sessions_per_year is the seed's where given (US 252); where the
-- seed leaves it empty (CN) it is derived from the ingested calendar: the mean number of
-- sessions of the calendar years it covers in full (a session on or before 7 January and one
-- on or after 24 December), else, when it covers no full year, its sessions scaled to a
-- year of 365.25 days.
with rules as (
    select market, sessions_per_year, risk_free_rate from {{ ref('market_rules') }}
),

sessions as (
    select market, session_date from {{ ref('stg_raw__sessions') }}
),

spans as (
    select
        market,
        min(session_date) as first_session,
        max(session_date) as last_session,
        count(*) as n_sessions
    from sessions
    group by market
),

full_years as (
    select sessions.market, year(sessions.session_date) as calendar_year, count(*) as n_sessions
    from sessions
    inner join spans on sessions.market = spans.market
    where spans.first_session <= make_date(year(sessions.session_date), 1, 7)
        and spans.last_session >= make_date(year(sessions.session_date), 12, 24)
    group by sessions.market, year(sessions.session_date)
),

from_calendar as (
    select
        spans.market,
        coalesce(
            (select avg(full_years.n_sessions) from full_years where full_years.market = spans.market),
            spans.n_sessions * 365.25 / (spans.last_session - spans.first_session + 1)
        ) as sessions_per_year
    from spans
),

final as (
    select
        rules.market,
        coalesce(rules.sessions_per_year, from_calendar.sessions_per_year) as sessions_per_year,
        case when rules.sessions_per_year is null then 'calendar' else 'seed' end
            as sessions_per_year_source,
        rules.risk_free_rate
    from rules
    inner join from_calendar on rules.market = from_calendar.market
)

select * from final
