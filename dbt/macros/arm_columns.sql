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
