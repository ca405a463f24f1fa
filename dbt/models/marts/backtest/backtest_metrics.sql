-- One row per arm, market and ticker, '__portfolio__' included (DESIGN §8), each over the
-- arm's own window (its rows of backtest_daily). The conventions are the macros of
-- macros/metrics.sql, documented in _backtest__models.yml. Comparisons: excess_return against
-- buy-and-hold over the arm's own window (hold_daily_return); win_rate_trap against that
-- buy-and-hold scaled by the arm's mean exposure (exposure_matched_return);
-- alignment_tax against the Free arm over the sessions both arms have (the common window,
-- alignment_tax_start .. alignment_tax_end).
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

-- The rules that fired on each decision's snapshot (what the guardrail read).
snapshot_signals as (
    select market, ticker, decision_date, signals from {{ ref('pit_snapshots') }}
),

-- Fidelity v2 (macros/fidelity.sql): each parsed answer's own proposal, before the guardrail,
-- against the book's previous exposure and the rules firing that day.
proposals as (
    select
        decisions.arm,
        decisions.market,
        decisions.ticker,
        coalesce(decisions.previous_exposure, 0.0) as previous,
        {{ proposed_exposure(
            'decisions.proposed_action',
            'decisions.proposed_target_exposure',
            'coalesce(decisions.previous_exposure, 0.0)'
        ) }} as proposed,
        {{ cited_rule_fires('snapshot_signals.signals', 'decisions."rule"', 'entry') }}
            as cited_entry_fires,
        {{ cited_rule_fires('snapshot_signals.signals', 'decisions."rule"', 'exit') }}
            as cited_exit_fires,
        {{ any_rule_fires('snapshot_signals.signals', 'entry') }} as entry_fires,
        {{ any_rule_fires('snapshot_signals.signals', 'exit') }} as exit_fires
    from decisions
    left join snapshot_signals
        on {{ same_snapshot('decisions', 'snapshot_signals') }}
    where decisions.answered
        and decisions.parse_status != 'failed'
        and decisions.proposed_action is not null
),

proposal_flags as (
    select
        arm,
        market,
        ticker,
        proposed > previous + {{ exposure_tolerance() }} as raises,
        proposed < previous - {{ exposure_tolerance() }} as lowers,
        -- a firing rule the book leaves room to follow: an entry while below full exposure,
        -- an exit while holding
        entry_fires and previous < 1 - {{ exposure_tolerance() }} as entry_open,
        exit_fires and previous > {{ exposure_tolerance() }} as exit_open,
        cited_entry_fires,
        cited_exit_fires
    from proposals
),

proposal_rows as (
    select * from proposal_flags
    union all
    select * replace ('__portfolio__' as ticker) from proposal_flags
),

proposal_stats as (
    select
        arm,
        market,
        ticker,
        count(*) filter (where raises or lowers) as n_changing_proposals,
        count(*) filter (where not (raises or lowers)) as n_abstentions,
        count(*) filter (where entry_open or exit_open) as n_firing_days,
        avg(case when (raises and cited_entry_fires) or (lowers and cited_exit_fires)
            then 1.0 else 0.0 end) filter (where raises or lowers) as fidelity,
        avg(case when (entry_open and raises) or (exit_open and lowers) then 1.0 else 0.0 end)
            filter (where entry_open or exit_open) as fidelity_acted
    from proposal_rows
    group by arm, market, ticker
),

models as (
    select * from {{ ref('models') }}
),

benchmark_kinds as (
    {{ benchmark_kinds() }}
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
        {{ total_return('hold_daily_return') }} as buy_and_hold_return,
        any_value(series_beta.beta) as beta,
        {{ alpha('daily_return', 'benchmark_return', 'series_beta.beta') }} as alpha,
        -- one-way turnover per year: half the value traded over the average equity
        {{ turnover('traded_value', 'equity') }} as turnover,
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
        -- fidelity is read against the rules in Strict, and in Guided as a reference
        any_value("mode") in ('strict', 'guided') as rules_apply
    from decision_rows
    group by arm, market, ticker
),

-- Each model arm with its Free arm: the same arm but for the mode (kind, model configuration,
-- reasoning on/off, attitude, replicate, view), on the same market.
free_pairs as (
    select arms.arm, arms.market, free.arm as free_arm
    from arms
    inner join arms as free
        on arms.arm_kind != 'baseline'
        and free."mode" = 'free'
        and free.arm_kind = arms.arm_kind
        and free.model_key is not distinct from arms.model_key
        and free.model = arms.model
        and free.is_reasoning is not distinct from arms.is_reasoning
        and free.attitude is not distinct from arms.attitude
        and free.replicate = arms.replicate
        and free."view" is not distinct from arms."view"
        and free.market = arms.market
),

-- Both arms' returns on the sessions both were simulated on: their common window.
common_days as (
    {{ paired_sessions('free_pairs', 'free') }}
),

common_beta as (
    select
        arm,
        market,
        free_arm,
        ticker,
        {{ beta('daily_return', 'benchmark_return') }} as beta,
        {{ beta('free_daily_return', 'benchmark_return') }} as free_beta
    from common_days
    group by arm, market, free_arm, ticker
),

alignment as (
    select
        common_days.arm,
        common_days.market,
        common_days.ticker,
        min(common_days."date") as alignment_tax_start,
        max(common_days."date") as alignment_tax_end,
        ({{ alpha('free_daily_return', 'benchmark_return', 'common_beta.free_beta') }})
        - ({{ alpha('daily_return', 'benchmark_return', 'common_beta.beta') }}) as alignment_tax
    from common_days
    inner join common_beta using (arm, market, free_arm, ticker)
    group by common_days.arm, common_days.market, common_days.free_arm, common_days.ticker
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
        arms.ingest_id,
        arms.decision_ingest_ids,
        arms.config_hash,
        arms.decisions_hash,
        returns.n_sessions,
        returns.total_return,
        returns.buy_and_hold_return,
        returns.annualized_return,
        returns.annualized_volatility,
        returns.sharpe,
        returns.sortino,
        returns.max_drawdown,
        {{ calmar('returns.annualized_return', 'returns.max_drawdown') }} as calmar,
        returns.alpha,
        returns.beta,
        coalesce(benchmark_kinds.benchmark_kind, 'price') as benchmark_kind,
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
        case when decision_stats.rules_apply then proposal_stats.fidelity end as fidelity,
        case when decision_stats.rules_apply then proposal_stats.fidelity_acted end
            as fidelity_acted,
        coalesce(proposal_stats.n_changing_proposals, 0) as n_changing_proposals,
        coalesce(proposal_stats.n_abstentions, 0) as n_abstentions,
        coalesce(proposal_stats.n_firing_days, 0) as n_firing_days
    from returns
    inner join arms
        on returns.arm = arms.arm and returns.market = arms.market
    left join models
        on arms.model = models.model_id
    left join benchmark_kinds
        on returns.market = benchmark_kinds.market
    left join trade_stats
        on {{ same_series('returns', 'trade_stats') }}
    left join decision_stats
        on {{ same_series('returns', 'decision_stats') }}
    left join proposal_stats
        on {{ same_series('returns', 'proposal_stats') }}
),

final as (
    select
        combined.*,
        combined.total_return - combined.buy_and_hold_return as excess_return,
        {{ exposure_matched_return('combined.avg_exposure', 'combined.buy_and_hold_return') }}
            as exposure_matched_return,
        alignment.alignment_tax,
        alignment.alignment_tax_start,
        alignment.alignment_tax_end,
        {{ win_rate_trap(
            'combined.n_trades',
            'combined.win_rate',
            'combined.payoff_ratio',
            'combined.total_return',
            exposure_matched_return('combined.avg_exposure', 'combined.buy_and_hold_return')
        ) }} as win_rate_trap
    from combined
    left join alignment
        on {{ same_series('combined', 'alignment') }}
),

-- Answered decisions inside / outside the model's training window (decision_training_window;
-- neither count takes a rule agent's or an unknown cutoff's decisions).
training_window_rows as (
    select decisions.arm, decisions.market, decisions.ticker, flags.in_training_window
    from decisions
    inner join {{ ref('decision_training_window') }} as flags
        on {{ same_series('decisions', 'flags') }}
        and decisions.decision_date = flags.decision_date
    where decisions.answered
),

training_window_stats as (
    select
        arm,
        market,
        ticker,
        count(*) filter (where in_training_window) as n_decisions_in_training_window,
        count(*) filter (where not in_training_window) as n_decisions_out_of_training_window
    from (
        select * from training_window_rows
        union all
        select arm, market, '__portfolio__' as ticker, in_training_window
        from training_window_rows
    )
    group by arm, market, ticker
),

-- Each Strict arm with the guardrail's control: the `random` agent in Strict mode of the same
-- attitude, replicate and view, on the same market (the first by slug should there be several
-- control models, so no series is mixed).
control_pairs as (
    select arms.arm, arms.market, control.arm as control_arm
    from arms
    inner join arms as control
        on arms."mode" = 'strict'
        and arms.arm_kind in ('llm', 'reference')
        and control.arm_kind = 'control'
        and control."mode" = 'strict'
        and control.attitude is not distinct from arms.attitude
        and control.replicate = arms.replicate
        and control."view" is not distinct from arms."view"
        and control.market = arms.market
    qualify row_number() over (partition by arms.arm, arms.market order by control.arm) = 1
),

-- Both arms' series on the sessions both were simulated on, with wealth and drawdown of each
-- over those sessions only.
control_days as (
    {{ paired_sessions('control_pairs', 'control') }}
),

control_wealth as (
    select
        *,
        {{ wealth('daily_return', 'arm, market, ticker', '"date"') }} as own_wealth,
        {{ wealth('control_daily_return', 'arm, market, ticker', '"date"') }} as control_wealth
    from control_days
),

control_drawdown as (
    select
        *,
        {{ drawdown('own_wealth', 'arm, market, ticker', '"date"') }} as own_drawdown,
        {{ drawdown('control_wealth', 'arm, market, ticker', '"date"') }} as control_drawdown
    from control_wealth
),

control_figures as (
    select
        arm,
        market,
        ticker,
        any_value(control_arm) as control_arm,
        {{ total_return('control_daily_return') }} as control_total_return,
        min(control_drawdown) as control_max_drawdown,
        min(own_drawdown) - min(control_drawdown) as drawdown_vs_control
    from control_drawdown
    group by arm, market, ticker
),

with_context as (
    select
        final.*,
        coalesce(training_window_stats.n_decisions_in_training_window, 0)
            as n_decisions_in_training_window,
        coalesce(training_window_stats.n_decisions_out_of_training_window, 0)
            as n_decisions_out_of_training_window,
        control_figures.control_arm,
        control_figures.control_total_return,
        control_figures.control_max_drawdown,
        control_figures.drawdown_vs_control
    from final
    left join training_window_stats
        on {{ same_series('final', 'training_window_stats') }}
    left join control_figures
        on {{ same_series('final', 'control_figures') }}
)

select * from with_context
