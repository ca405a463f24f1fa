-- One row per arm, market, ticker and session (DESIGN §8): each equal-capital ticker sleeve as
-- simulated (backtest/simulation.py), plus the arm's portfolio per market (ticker
-- '__portfolio__': the sum of its sleeves) and the benchmark's return on the session. The rows
-- are the arm's own window; hold_* is buy-and-hold over that same window (excess_return's
-- comparison). risk_free_return (int_risk_free_daily) is the session's return of idle cash, the
-- simulation's interest and the metrics' excess-return baseline; sessions_per_year is the
-- market's annualisation (int_market_conventions).
with sleeves as (
    select * from {{ ref('stg_landing__backtest_sleeves') }}
),

arms as (
    select * from {{ ref('stg_landing__backtest_arms') }}
),

benchmark as (
    select
        market,
        benchmark_date,
        benchmark_close / lag(benchmark_close) over (
            partition by market order by benchmark_date
        ) - 1 as benchmark_return
    from {{ ref('stg_raw__benchmark') }}
),

risk_free as (
    select market, "date", risk_free_return from {{ ref('int_risk_free_daily') }}
),

conventions as (
    select market, sessions_per_year from {{ ref('int_market_conventions') }}
),

portfolio_sums as (
    select
        arm,
        market,
        '__portfolio__' as ticker,
        "date",
        sum(traded_value) as traded_value,
        bool_or(limit_blocked) as limit_blocked,
        sum(fees) as fees,
        sum(position_value) as position_value,
        sum(cash) as cash,
        sum(equity) as equity,
        sum(initial_capital) as initial_capital,
        sum(hold_equity) as hold_equity
    from sleeves
    group by arm, market, "date"
),

portfolio as (
    select
        *,
        position_value / equity as exposure,
        -- the first session's return is against the capital put in, as for the sleeves
        equity / coalesce(
            lag(equity) over (partition by arm, market order by "date"), initial_capital
        ) - 1 as daily_return,
        hold_equity / coalesce(
            lag(hold_equity) over (partition by arm, market order by "date"), initial_capital
        ) - 1 as hold_daily_return
    from portfolio_sums
),

unioned as (
    select
        arm, market, ticker, "date", target_exposure, has_bar, shares, fill_price,
        traded_shares, traded_value, limit_blocked, fees, position_value, cash, equity,
        exposure, daily_return, initial_capital, hold_equity, hold_daily_return
    from sleeves
    union all by name
    select
        arm, market, ticker, "date", traded_value, limit_blocked, fees, position_value, cash,
        equity, exposure, daily_return, initial_capital, hold_equity, hold_daily_return
    from portfolio
),

final as (
    select
        unioned.arm,
        unioned.market,
        unioned.ticker,
        unioned."date",
        {{ arm_columns('arms') }},
        unioned.target_exposure,
        unioned.has_bar,
        unioned.shares,
        unioned.fill_price,
        unioned.traded_shares,
        unioned.traded_value,
        unioned.limit_blocked,
        unioned.fees,
        unioned.position_value,
        unioned.cash,
        unioned.equity,
        unioned.exposure,
        unioned.daily_return,
        unioned.initial_capital,
        unioned.hold_equity,
        unioned.hold_daily_return,
        benchmark.benchmark_return,
        risk_free.risk_free_return,
        conventions.sessions_per_year
    from unioned
    inner join arms
        on unioned.arm = arms.arm and unioned.market = arms.market
    left join benchmark
        on unioned.market = benchmark.market and unioned."date" = benchmark.benchmark_date
    left join risk_free
        on unioned.market = risk_free.market and unioned."date" = risk_free."date"
    left join conventions
        on unioned.market = conventions.market
)

select * from final
