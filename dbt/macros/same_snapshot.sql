{#- Join condition of two relations at the snapshot grain (market, ticker, decision_date). -#}
{% macro same_snapshot(left, right) -%}
    {{ left }}.market = {{ right }}.market
    and {{ left }}.ticker = {{ right }}.ticker
    and {{ left }}.decision_date = {{ right }}.decision_date
{%- endmacro %}
