-- Market regime per benchmark session, with hindsight, and its episode (a maximal run of one
-- regime): the rule of macros/regime.sql with regime_window_sessions and regime_trend_pct.
-- For analysis of results only: these labels use the future and never enter a snapshot.
with labelled as (
    {{ regime_labelling(var('regime_window_sessions'), var('regime_trend_pct')) }}
),

final as (
    select market, "date", window_return, regime, episode from labelled
)

select * from final
