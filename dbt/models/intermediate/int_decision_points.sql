-- One decision per market and exchange session. The information cutoff is the session open in
-- exchange time (DST-correct through the IANA zone) minus the buffer, stored in UTC.
with sessions as (
    select * from {{ ref('stg_raw__sessions') }}
),

rules as (
    select market, timezone, session_open from {{ ref('market_rules') }}
),

opens as (
    select
        sessions.market,
        sessions.session_date as decision_date,
        lag(sessions.session_date) over (
            partition by sessions.market order by sessions.session_date
        ) as previous_session_date,
        timezone(rules.timezone, sessions.session_date + rules.session_open) as session_open_at
    from sessions
    inner join rules on sessions.market = rules.market
),

final as (
    select
        market,
        decision_date,
        previous_session_date,
        session_open_at,
        session_open_at - to_minutes({{ var('cutoff_buffer_minutes') }}) as information_cutoff
    from opens
)

select * from final
