-- The main metrics per arm, market and regime (DESIGN §8): each arm's portfolio on the
-- sessions of one benchmark regime (regime_labels), with the round trips entered in that
-- regime. Order-free metrics (returns, volatility, ratios, CAPM) pool the regime's sessions;
-- drawdown is path-dependent, so it is measured within each episode of the regime (a maximal
-- run of one regime, regime_episodes) and max_drawdown is the worst episode's: no drawdown
-- spans sessions of another regime. Each arm over its own window; excess_return against
-- buy-and-hold over that window, on the same sessions (hold_daily_return of backtest_daily).
with with_drawdown as (
    {{ regime_episode_rows(ref('regime_labels')) }}
),

benchmark_kinds as (
    {{ benchmark_kinds() }}
),

regime_beta as (
    select arm, market, regime, {{ beta('daily_return', 'benchmark_return') }} as beta
    from with_drawdown
    group by arm, market, regime
),

returns as (
    select
        arm,
        market,
        regime,
        any_value(model) as model,
        any_value("mode") as "mode",
        any_value(attitude) as attitude,
        any_value(replicate) as replicate,
        any_value(is_llm) as is_llm,
        any_value(arm_kind) as arm_kind,
        {{ return_metrics('daily_return', 'drawdown') }},
        count(distinct episode) as n_episodes,
        any_value(regime_beta.beta) as beta,
        {{ alpha('daily_return', 'benchmark_return', 'regime_beta.beta') }} as alpha,
        {{ total_return('benchmark_return') }} as benchmark_return,
        {{ total_return('hold_daily_return') }} as buy_and_hold_return,
        avg(exposure) as avg_exposure
    from with_drawdown
    inner join regime_beta using (arm, market, regime)
    group by arm, market, regime
),

trade_stats as (
    select
        arm,
        market,
        entry_regime as regime,
        {{ trade_metrics('net_pnl', 'trade_return') }}
    from {{ ref('backtest_trades') }}
    group by arm, market, entry_regime
),

final as (
    select
        returns.*,
        coalesce(benchmark_kinds.benchmark_kind, 'price') as benchmark_kind,
        {{ calmar('returns.annualized_return', 'returns.max_drawdown') }} as calmar,
        returns.total_return - returns.buy_and_hold_return as excess_return,
        coalesce(trade_stats.n_trades, 0) as n_trades,
        trade_stats.win_rate,
        trade_stats.profit_factor,
        trade_stats.payoff_ratio
    from returns
    left join benchmark_kinds
        on returns.market = benchmark_kinds.market
    left join trade_stats
        on returns.arm = trade_stats.arm
        and returns.market = trade_stats.market
        and returns.regime = trade_stats.regime
)

select * from final
