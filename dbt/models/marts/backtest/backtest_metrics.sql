-- One row per arm, market and ticker, '__portfolio__' included (DESIGN §8). The conventions
-- are the macros of macros/metrics.sql, documented in _backtest__models.yml.
with daily as (
    select * from {{ ref('backtest_daily') }}
),

arms as (
    select * from {{ ref('stg_landing__backtest_arms') }}
),

trades as (
    select * from {{ ref('backtest_trades') }}
),

decisions as (
    select decisions.*, decisions.answer_status is distinct from 'no_answer' as answered
    from {{ ref('stg_landing__llm_decisions') }} as decisions
    inner join arms
        on decisions.arm = arms.arm
        and decisions.market = arms.market
        and decisions.decision_date between arms.window_start and arms.window_end
),

models as (
    select * from {{ ref('models') }}
),

with_drawdown as (
    {{ with_wealth_and_drawdown('daily', 'arm, market, ticker') }}
),

series_beta as (
    select arm, market, ticker, {{ beta('daily_return', 'benchmark_return') }} as beta
    from daily
    group by arm, market, ticker
),

returns as (
    select
        with_drawdown.arm,
        with_drawdown.market,
        with_drawdown.ticker,
        {{ return_metrics('daily_return', 'drawdown') }},
        any_value(series_beta.beta) as beta,
        {{ alpha('daily_return', 'benchmark_return', 'series_beta.beta') }} as alpha,
        -- one-way turnover per year: half the value traded over the average equity
        sum(traded_value) / 2 / avg(equity) * {{ annualization_days() }} / count(*) as turnover,
        avg(exposure) as avg_exposure,
        sum(fees) as total_fees
    from with_drawdown
    inner join series_beta using (arm, market, ticker)
    group by with_drawdown.arm, with_drawdown.market, with_drawdown.ticker
),

trade_rows as (
    select arm, market, ticker, net_pnl, trade_return from trades
    union all
    select arm, market, '__portfolio__' as ticker, net_pnl, trade_return from trades
),

trade_stats as (
    select arm, market, ticker, {{ trade_metrics('net_pnl', 'trade_return') }}
    from trade_rows
    group by arm, market, ticker
),

decision_rows as (
    select arm, market, ticker, "mode", confidence, parse_status, guardrail_status, answered
    from decisions
    union all
    select
        arm, market, '__portfolio__', "mode", confidence, parse_status, guardrail_status, answered
    from decisions
),

decision_stats as (
    select
        arm,
        market,
        ticker,
        -- A request that got no answer is no decision: counted apart, in no denominator.
        count(*) filter (where answered) as n_decisions,
        count(*) filter (where not answered) as n_no_answer,
        stddev_samp(confidence) filter (where parse_status != 'failed') as confidence_std,
        avg(case when parse_status = 'failed' then 1.0 else 0.0 end) filter (where answered)
            as parse_failure_rate,
        case when any_value("mode") = 'strict' then
            avg(case when guardrail_status = 'pass' then 1.0 else 0.0 end) filter (where answered)
        end as fidelity
    from decision_rows
    group by arm, market, ticker
),

combined as (
    select
        returns.arm,
        returns.market,
        returns.ticker,
        {{ arm_columns('arms') }},
        models.params_total_b,
        models.params_active_b,
        arms.window_start,
        arms.window_end,
        returns.n_sessions,
        returns.total_return,
        returns.annualized_return,
        returns.annualized_volatility,
        returns.sharpe,
        returns.sortino,
        returns.max_drawdown,
        {{ calmar('returns.annualized_return', 'returns.max_drawdown') }} as calmar,
        returns.alpha,
        returns.beta,
        coalesce(trade_stats.n_trades, 0) as n_trades,
        trade_stats.win_rate,
        trade_stats.profit_factor,
        trade_stats.payoff_ratio,
        trade_stats.avg_win,
        trade_stats.avg_loss,
        returns.turnover,
        returns.avg_exposure,
        returns.total_fees,
        coalesce(decision_stats.n_decisions, 0) as n_decisions,
        coalesce(decision_stats.n_no_answer, 0) as n_no_answer,
        decision_stats.confidence_std,
        decision_stats.parse_failure_rate,
        decision_stats.fidelity
    from returns
    inner join arms
        on returns.arm = arms.arm and returns.market = arms.market
    left join models
        on arms.model = models.model_id
    left join trade_stats
        on returns.arm = trade_stats.arm
        and returns.market = trade_stats.market
        and returns.ticker = trade_stats.ticker
    left join decision_stats
        on returns.arm = decision_stats.arm
        and returns.market = decision_stats.market
        and returns.ticker = decision_stats.ticker
),

final as (
    select
        combined.*,
        combined.total_return - buy_and_hold.total_return as excess_return,
        free.alpha - combined.alpha as alignment_tax,
        coalesce(
            combined.n_trades >= {{ var('win_rate_trap_min_trades') }}
            and combined.win_rate > {{ var('win_rate_trap_min_win_rate') }}
            and combined.total_return < buy_and_hold.total_return,
            false
        ) as win_rate_trap
    from combined
    left join combined as buy_and_hold
        on buy_and_hold.arm = 'buy_and_hold'
        and combined.market = buy_and_hold.market
        and combined.ticker = buy_and_hold.ticker
    -- the same model, attitude and replicate without alignment (Free mode)
    left join combined as free
        on combined.arm_kind != 'baseline'
        and free."mode" = 'free'
        and free.arm_kind = combined.arm_kind
        and free.model = combined.model
        and free.attitude is not distinct from combined.attitude
        and free.replicate = combined.replicate
        and free.market = combined.market
        and free.ticker = combined.ticker
)

select * from final
