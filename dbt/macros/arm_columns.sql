{# What describes an arm in every backtest table, from stg_landing__backtest_arms. #}
{% macro arm_columns(alias) %}
    {{ alias }}.model,
    {{ alias }}."mode",
    {{ alias }}.attitude,
    {{ alias }}.replicate,
    {{ alias }}.is_llm,
    {{ alias }}.arm_kind,
    {{ alias }}.is_reasoning
{% endmacro %}

{# Each arm of `pairs` (columns arm, market, <partner>_arm) with its partner arm's series, on
   the sessions both were simulated on (their common window), from the `daily` CTE
   (backtest_daily): the arm's columns, and the partner's return as <partner>_daily_return. #}
{% macro paired_sessions(pairs, partner) %}
    select
        pairs.arm,
        pairs.market,
        pairs.{{ partner }}_arm,
        own.ticker,
        own."date",
        own.daily_return,
        partner.daily_return as {{ partner }}_daily_return,
        own.benchmark_return,
        own.risk_free_return,
        own.sessions_per_year
    from {{ pairs }} as pairs
    inner join daily as own
        on pairs.arm = own.arm and pairs.market = own.market
    inner join daily as partner
        on pairs.{{ partner }}_arm = partner.arm
        and own.market = partner.market
        and own.ticker = partner.ticker
        and own."date" = partner."date"
{% endmacro %}
