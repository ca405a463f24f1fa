-- Market regime per benchmark session, with hindsight: the benchmark's return from
-- regime_window_sessions/2 sessions before to regime_window_sessions/2 sessions after the day
-- (clipped at the ends of the series). Above +regime_trend_pct % it is an uptrend, below
-- -regime_trend_pct % a downtrend, otherwise sideways. For analysis of results only: these
-- labels use the future and never enter a snapshot.
{% set half = (var('regime_window_sessions') // 2) | int %}
with benchmark as (
    select market, benchmark_date, benchmark_close from {{ ref('stg_raw__benchmark') }}
),

windowed as (
    select
        market,
        benchmark_date,
        first_value(benchmark_close) over (
            partition by market order by benchmark_date
            rows between {{ half }} preceding and current row
        ) as close_before,
        last_value(benchmark_close) over (
            partition by market order by benchmark_date
            rows between current row and {{ half }} following
        ) as close_after
    from benchmark
),

final as (
    select
        market,
        benchmark_date as date,
        close_after / close_before - 1 as window_return,
        case
            when close_after / close_before - 1 > {{ var('regime_trend_pct') / 100 }} then 'uptrend'
            when close_after / close_before - 1 < -{{ var('regime_trend_pct') / 100 }} then 'downtrend'
            else 'sideways'
        end as regime
    from windowed
)

select * from final
