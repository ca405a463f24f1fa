{#
  The metric conventions, written once: backtest_metrics and regime_metrics call these macros
  and their YAML documents the conventions. Daily returns r; annualization by
  var('annualization_days') (252 sessions); compounding; risk-free rate 0; drawdown as a
  negative fraction of the highest wealth so far, the starting capital included. They match
  empyrical-reloaded (tests/test_backtest_metrics.py holds them to 1e-9).
#}

{% macro annualization_days() %}{{ var('annualization_days') }}{% endmacro %}

{# Window column: the compounded growth of 1 (the starting capital) through each row. #}
{% macro wealth(r, partition_by, order_by) %}
    product(1 + {{ r }}) over (
        partition by {{ partition_by }} order by {{ order_by }}
        rows between unbounded preceding and current row
    )
{% endmacro %}

{# Window column over `wealth`: the fall from the highest wealth so far (start = 1 included). #}
{% macro drawdown(wealth, partition_by, order_by) %}
    {{ wealth }} / greatest(1.0, max({{ wealth }}) over (
        partition by {{ partition_by }} order by {{ order_by }}
        rows between unbounded preceding and current row
    )) - 1
{% endmacro %}

{# Aggregate: the compounded return of the rows' daily returns r. #}
{% macro total_return(r) %}
    product(1 + {{ r }}) - 1
{% endmacro %}

{# Aggregates over the rows of one series: r the daily return, drawdown from drawdown(). #}
{% macro return_metrics(r, drawdown) %}
    count({{ r }}) as n_sessions,
    {{ total_return(r) }} as total_return,
    power(product(1 + {{ r }}), {{ annualization_days() }} / count({{ r }})) - 1
        as annualized_return,
    stddev_samp({{ r }}) * sqrt({{ annualization_days() }}) as annualized_volatility,
    -- undefined (null) when every return is the same: no dispersion to divide by
    case when max({{ r }}) > min({{ r }}) then
        avg({{ r }}) / stddev_samp({{ r }}) * sqrt({{ annualization_days() }})
    end as sharpe,
    -- downside deviation: root mean square of the returns below 0, all sessions counted
    avg({{ r }}) * {{ annualization_days() }} / nullif(
        sqrt(avg(power(least({{ r }}, 0), 2))) * sqrt({{ annualization_days() }}), 0
    ) as sortino,
    min({{ drawdown }}) as max_drawdown
{% endmacro %}

{# Calmar: annualized return over the size of the maximum drawdown; null without a drawdown. #}
{% macro calmar(annualized_return, max_drawdown) %}
    case when {{ max_drawdown }} < 0 then {{ annualized_return }} / abs({{ max_drawdown }}) end
{% endmacro %}

{# CAPM against the market benchmark (rf 0), on sessions where both returns exist: beta the
   slope of r on the benchmark (population covariance / variance), alpha the mean daily
   residual r - beta x benchmark compounded over a year. #}
{% macro beta(r, benchmark_r) %}
    regr_slope({{ r }}, {{ benchmark_r }})
{% endmacro %}

{% macro alpha(r, benchmark_r, beta) %}
    power(1 + avg({{ r }} - {{ beta }} * {{ benchmark_r }}), {{ annualization_days() }}) - 1
{% endmacro %}

{# Round-trip aggregates (win: net pnl > 0; loss: net pnl < 0; a trip at exactly 0 is
   neither). avg_win / avg_loss are mean trade returns (net pnl over the cash put in). #}
{% macro trade_metrics(net_pnl, trade_return) %}
    count(*) as n_trades,
    avg(case when {{ net_pnl }} > 0 then 1.0 else 0.0 end) as win_rate,
    sum({{ net_pnl }}) filter (where {{ net_pnl }} > 0)
        / nullif(-sum({{ net_pnl }}) filter (where {{ net_pnl }} < 0), 0) as profit_factor,
    avg({{ trade_return }}) filter (where {{ net_pnl }} > 0)
        / nullif(-avg({{ trade_return }}) filter (where {{ net_pnl }} < 0), 0) as payoff_ratio,
    avg({{ trade_return }}) filter (where {{ net_pnl }} > 0) as avg_win,
    avg({{ trade_return }}) filter (where {{ net_pnl }} < 0) as avg_loss
{% endmacro %}

{# Rows of `relation` with the window columns wealth and drawdown per series. #}
{% macro with_wealth_and_drawdown(relation, partition_by, order_by='"date"') %}
    select
        *,
        {{ drawdown('wealth', partition_by, order_by) }} as drawdown
    from (
        select *, {{ wealth('daily_return', partition_by, order_by) }} as wealth
        from {{ relation }}
    )
{% endmacro %}
