-- Does a regime finding survive another labelling? The main regime metrics of regime_metrics
-- (same conventions, drawdown within episodes) per arm, market and regime under the configured
-- labelling and each of var('regime_sensitivity_choices'), one row per choice of
-- (regime_window_sessions, regime_trend_pct). The labelling rule is macros/regime.sql, the one
-- regime_labels uses.
with labellings as (
    {% for window_sessions, trend_pct in regime_labelling_choices() %}
    select
        {{ window_sessions }} as regime_window_sessions,
        {{ trend_pct }} as regime_trend_pct,
        labelled.*
    from ({{ regime_labelling(window_sessions, trend_pct) }}) as labelled
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

with_drawdown as (
    {{ regime_episode_rows('labellings', ['regime_window_sessions', 'regime_trend_pct']) }}
),

final as (
    select
        arm,
        market,
        regime_window_sessions,
        regime_trend_pct,
        regime,
        {{ return_metrics('daily_return', 'drawdown') }},
        count(distinct episode) as n_episodes,
        {{ total_return('hold_daily_return') }} as buy_and_hold_return,
        ({{ total_return('daily_return') }}) - ({{ total_return('hold_daily_return') }})
            as excess_return,
        avg(exposure) as avg_exposure
    from with_drawdown
    group by arm, market, regime_window_sessions, regime_trend_pct, regime
)

select * from final
