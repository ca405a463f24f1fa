{#- A landing source written as one file per arm, market and date: the source itself when any
    file exists, else an empty relation with the source's declared columns. read_parquet fails
    on a glob that matches nothing, and a warehouse has no decisions before the first `infer`
    (the baselines are backtested without any). -#}
{% macro landing_files(table) %}
    {%- set relation = source('landing', table) -%}
    {%- if not execute -%}
        {{ relation }}
    {%- else -%}
        {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', 'landing')
            | selectattr('name', 'equalto', table) | first -%}
        {%- set found = run_query("select count(*) from glob('" ~ node.meta.files ~ "')").columns[0].values()[0] -%}
        {%- if found > 0 -%}
            {{ relation }}
        {%- else -%}
            (select
            {%- for column in node.columns.values() %}
                cast(null as {{ column.data_type }}) as {{ adapter.quote(column.name) }}{{ "," if not loop.last }}
            {%- endfor %}
            where false)
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
