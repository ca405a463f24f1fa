{#
  Win-rate trap v2 (backtest_metrics; documented in _backtest__models.yml): an arm that wins
  often, wins less than it loses per trip, and still trails holding at its own exposure.
#}

{# Buy-and-hold at the arm's mean exposure: that share of the capital bought and held over the
   arm's window, the rest left in cash without interest (the arm's own idle cash earns the
   risk-free rate, so this comparison leans slightly in the arm's favour), never rebalanced;
   so mean exposure x buy-and-hold's total return. A static split rather than a
   daily-rebalanced constant mix: a real portfolio with no trading after the first bar, so it
   has no rebalancing costs to invent, and it reads as "the same money at risk, just held". #}
{% macro exposure_matched_return(avg_exposure, buy_and_hold_return) %}
    ({{ avg_exposure }} * {{ buy_and_hold_return }})
{% endmacro %}

{# At least var('win_rate_trap_min_trades') closed trips, win rate >= var('win_rate_trap_min_win_rate'),
   payoff ratio < 1 (the mean win smaller than the mean loss) and a total return below the
   exposure-matched buy-and-hold; false when any part is undefined (e.g. no losing trip). #}
{% macro win_rate_trap(n_trades, win_rate, payoff_ratio, total_return, matched_return) %}
    coalesce(
        {{ n_trades }} >= {{ var('win_rate_trap_min_trades') }}
        and {{ win_rate }} >= {{ var('win_rate_trap_min_win_rate') }}
        and {{ payoff_ratio }} < 1
        and {{ total_return }} < {{ matched_return }},
        false
    )
{% endmacro %}
