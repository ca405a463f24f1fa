{#- The decision-date window of this build, from the start_date / end_date vars (inclusive).
    Null vars mean no bound: a full build. -#}
{% macro decision_window(column) -%}
    {%- set start = var('start_date') -%}
    {%- set end = var('end_date') -%}
    ({% if start %}{{ column }} >= date '{{ start }}'{% else %}true{% endif %}
     and {% if end %}{{ column }} <= date '{{ end }}'{% else %}true{% endif %})
{%- endmacro %}

{#- The same window widened backwards by `days`, for inputs a window's decisions look back on. -#}
{% macro decision_window_with_lookback(column, days) -%}
    {%- set start = var('start_date') -%}
    {%- set end = var('end_date') -%}
    ({% if start %}{{ column }} >= date '{{ start }}' - interval {{ days }} day{% else %}true{% endif %}
     and {% if end %}{{ column }} <= date '{{ end }}' + interval 1 day{% else %}true{% endif %})
{%- endmacro %}

{#- A regular expression matching any of the words in a list var, as whole words. -#}
{% macro word_pattern(var_name) -%}
    '\b({{ var(var_name) | join("|") }})\b'
{%- endmacro %}
