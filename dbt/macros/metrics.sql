{#
  The metric conventions, written once: backtest_metrics and regime_metrics call these macros
  and their YAML documents the conventions. Daily returns r (total returns: the simulation
  credits dividends and interest); annualization by the market's sessions a year P (column
  `sessions_per_year` of backtest_daily, from int_market_conventions: US 252, CN from its
  calendar); compounding; the session's risk-free return rf (column `risk_free_return`, from
  int_risk_free_daily) subtracted in Sharpe, Sortino and the CAPM (alpha, beta on excess
  returns); drawdown as a negative fraction of the highest wealth so far, the starting capital
  included. They match empyrical-reloaded given the same rf and annualization
  (tests/test_backtest_metrics.py holds them to 1e-9).
#}

{# Aggregate: P of the rows' market (one value per series: a series is in one market). #}
{% macro periods_per_year(periods='sessions_per_year') %}any_value({{ periods }}){% endmacro %}

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

{# Aggregates over the rows of one series: r the daily return, drawdown from drawdown(), rf
   the session's risk-free return, periods the market's sessions a year. #}
{% macro return_metrics(r, drawdown, rf='risk_free_return', periods='sessions_per_year') %}
    {%- set p = periods_per_year(periods) -%}
    {%- set excess = '(' ~ r ~ ' - ' ~ rf ~ ')' -%}
    count({{ r }}) as n_sessions,
    {{ total_return(r) }} as total_return,
    power(product(1 + {{ r }}), {{ p }} / count({{ r }})) - 1 as annualized_return,
    stddev_samp({{ r }}) * sqrt({{ p }}) as annualized_volatility,
    -- on excess returns; undefined (null) when every excess return is the same
    case when max({{ excess }}) > min({{ excess }}) then
        avg({{ excess }}) / stddev_samp({{ excess }}) * sqrt({{ p }})
    end as sharpe,
    -- downside deviation: root mean square of the excess returns below 0, all sessions counted
    avg({{ excess }}) * {{ p }} / nullif(
        sqrt(avg(power(least({{ excess }}, 0), 2))) * sqrt({{ p }}), 0
    ) as sortino,
    min({{ drawdown }}) as max_drawdown
{% endmacro %}

{# Calmar: annualized return over the size of the maximum drawdown; null without a drawdown. #}
{% macro calmar(annualized_return, max_drawdown) %}
    case when {{ max_drawdown }} < 0 then {{ annualized_return }} / abs({{ max_drawdown }}) end
{% endmacro %}

{# CAPM on excess returns against the market benchmark, r - rf = alpha + beta (b - rf), on
   sessions where both returns exist: beta the slope of r - rf on b - rf (population
   covariance / variance), alpha the mean daily residual compounded over a year (P). #}
{% macro beta(r, benchmark_r, rf='risk_free_return') %}
    regr_slope({{ r }} - {{ rf }}, {{ benchmark_r }} - {{ rf }})
{% endmacro %}

{% macro alpha(r, benchmark_r, beta, rf='risk_free_return', periods='sessions_per_year') %}
    power(
        1 + avg(({{ r }} - {{ rf }}) - {{ beta }} * ({{ benchmark_r }} - {{ rf }})),
        {{ periods_per_year(periods) }}
    ) - 1
{% endmacro %}

{# One-way turnover per year: half the value traded over the average equity, annualized. #}
{% macro turnover(traded_value, equity, periods='sessions_per_year') %}
    sum({{ traded_value }}) / 2 / avg({{ equity }}) * {{ periods_per_year(periods) }} / count(*)
{% endmacro %}

{# Each market's benchmark kind (total_return | price), as its raw file declares it. #}
{% macro benchmark_kinds() %}
    select market, coalesce(any_value(benchmark_kind), 'price') as benchmark_kind
    from {{ ref('stg_raw__benchmark') }}
    group by market
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
