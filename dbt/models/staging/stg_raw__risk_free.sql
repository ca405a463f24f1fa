-- The optional daily risk-free series (market, date, annual_rate). read_parquet fails on a
-- glob that matches nothing, and most datasets have no such file: then no rows, and
-- int_risk_free_daily uses the market's constant rate.
{%- set files = "" -%}
{%- if execute -%}
    {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', 'raw')
        | selectattr('name', 'equalto', 'risk_free') | first -%}
    {%- set files = node.meta.files -%}
{%- endif %}
with source as (
    {% if execute and run_query("select count(*) from glob('" ~ files ~ "')").columns[0].values()[0] > 0 -%}
    select market, "date", annual_rate from {{ source('raw', 'risk_free') }}
    {%- else -%}
    select
        cast(null as varchar) as market,
        cast(null as date) as "date",
        cast(null as double) as annual_rate
    where false
    {%- endif %}
),

final as (
    select
        market,
        "date",
        annual_rate
    from source
)

select * from final
