{#- Join condition of two relations at the snapshot grain (market, ticker, decision_date). -#}
{% macro same_snapshot(left, right) -%}
    {{ left }}.market = {{ right }}.market
    and {{ left }}.ticker = {{ right }}.ticker
    and {{ left }}.decision_date = {{ right }}.decision_date
{%- endmacro %}

{#- Join condition of two relations at the backtest series grain (arm, market, ticker). -#}
{% macro same_series(left, right) -%}
    {{ left }}.arm = {{ right }}.arm
    and {{ left }}.market = {{ right }}.market
    and {{ left }}.ticker = {{ right }}.ticker
{%- endmacro %}
