-- One row per market and regime episode (regime_labels): a maximal run of consecutive
-- benchmark sessions with the same regime, its first and last session.
with labels as (
    select * from {{ ref('regime_labels') }}
),

final as (
    select
        market,
        episode,
        any_value(regime) as regime,
        min("date") as start_date,
        max("date") as end_date,
        count(*) as n_sessions
    from labels
    group by market, episode
)

select * from final
