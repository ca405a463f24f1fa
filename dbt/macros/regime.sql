{#
  The regime labelling rule, written once: regime_labels uses it with the configured vars,
  regime_sensitivity with those and var('regime_sensitivity_choices'). With hindsight (analysis
  only, never in a snapshot): the benchmark's return from window_sessions/2 sessions before to
  window_sessions/2 sessions after each session (clipped at the ends of the series); above
  +trend_pct % an uptrend, below -trend_pct % a downtrend, otherwise sideways. An episode is a
  maximal run of consecutive benchmark sessions of a market with the same regime, numbered
  1, 2, ... in date order per market.
#}
{% macro regime_labelling(window_sessions, trend_pct) %}
    {%- set half = (window_sessions // 2) | int -%}
    {%- set threshold = trend_pct / 100 -%}
    select
        market,
        "date",
        window_return,
        regime,
        -- a new episode starts where the regime differs from the previous session's
        cast(sum(case when regime is distinct from previous_regime then 1 else 0 end) over (
            partition by market order by "date" rows between unbounded preceding and current row
        ) as bigint) as episode
    from (
        select
            *,
            lag(regime) over (partition by market order by "date") as previous_regime
        from (
            select
                market,
                "date",
                window_return,
                case
                    when window_return > {{ threshold }} then 'uptrend'
                    when window_return < -{{ threshold }} then 'downtrend'
                    else 'sideways'
                end as regime
            from (
                select
                    market,
                    benchmark_date as "date",
                    last_value(benchmark_close) over (
                        partition by market order by benchmark_date
                        rows between current row and {{ half }} following
                    ) / first_value(benchmark_close) over (
                        partition by market order by benchmark_date
                        rows between {{ half }} preceding and current row
                    ) - 1 as window_return
                from {{ ref('stg_raw__benchmark') }}
            )
        )
    )
{% endmacro %}

{# The (window sessions, trend %) labellings of regime_sensitivity: the configured one first. #}
{% macro regime_labelling_choices() %}
    {{ return([[var('regime_window_sessions'), var('regime_trend_pct')]]
        + var('regime_sensitivity_choices')) }}
{% endmacro %}

{# Portfolio rows of backtest_daily with the session's regime and episode from `labels` (null
   episode, regime 'unlabelled' where it has none) and the drawdown within the episode: the
   wealth restarts at 1 at each episode's first session of the arm's window, so no drawdown
   spans sessions of another regime. `keys` are extra columns of `labels` to carry along. #}
{% macro regime_episode_rows(labels, keys=[]) %}
    {%- set key_columns = keys | join(', ') ~ (', ' if keys else '') -%}
    {%- set by_episode = 'arm, market, ' ~ key_columns ~ 'regime, episode' -%}
    select
        *,
        {{ drawdown('wealth', by_episode, '"date"') }} as drawdown
    from (
        select
            labelled.*,
            {{ wealth('daily_return', by_episode, '"date"') }} as wealth
        from (
            select
                daily.*,
                {% for key in keys %}choice.{{ key }}, {% endfor %}
                coalesce(labels.regime, 'unlabelled') as regime,
                labels.episode
            from {{ ref('backtest_daily') }} as daily
            {%- if keys %}
            cross join (select distinct {{ keys | join(', ') }} from {{ labels }}) as choice
            {%- endif %}
            left join {{ labels }} as labels
                on daily.market = labels.market
                and daily."date" = labels."date"
                {%- for key in keys %}
                and labels.{{ key }} = choice.{{ key }}
                {%- endfor %}
            where daily.ticker = '__portfolio__'
        ) as labelled
    )
{% endmacro %}
