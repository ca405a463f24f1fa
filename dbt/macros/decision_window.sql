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

{#- A regular expression matching any of the terms in a list var: as whole words by default;
    whole_words=false matches them anywhere (Chinese has no spaces between words, and RE2's \b
    is an ASCII word boundary, so a Chinese term inside a headline would never match). -#}
{% macro word_pattern(var_name, whole_words=true) -%}
    {%- if whole_words -%}
    '\b({{ var(var_name) | join("|") }})\b'
    {%- else -%}
    '({{ var(var_name) | join("|") }})'
    {%- endif -%}
{%- endmacro %}
