{#
  Fidelity v2 (backtest_metrics; documented in _backtest__models.yml): how the model's own
  proposal, before the guardrail, relates to the strategy rules that fired on the decision's
  snapshot (pit_snapshots.signals).
#}

{# Exposures closer than this are the same exposure (inference.guardrail's tolerance). #}
{% macro exposure_tolerance() %}1e-9{% endmacro %}

{# The exposure a proposal leads to from the book's previous exposure, before the guardrail:
   buy never lowers, sell never raises, hold keeps (inference.guardrail.standing_exposure). #}
{% macro proposed_exposure(action, target, previous) %}
    case {{ action }}
        when 'buy' then greatest({{ previous }}, {{ target }})
        when 'sell' then least({{ previous }}, {{ target }})
        when 'hold' then {{ previous }}
    end
{% endmacro %}

{# Whether the cited rule (S1..S4) fires on `side` (entry | exit) in the snapshot's signals;
   false without a rule or without signals. #}
{% macro cited_rule_fires(signals, rule, side) %}
    coalesce(case upper({{ rule }})
        {%- for n in range(1, 5) %}
        when 'S{{ n }}' then {{ signals }}.s{{ n }}_{{ side }}
        {%- endfor %}
    end, false)
{% endmacro %}

{# Whether any rule fires on `side` (entry | exit) in the snapshot's signals. #}
{% macro any_rule_fires(signals, side) %}
    coalesce(
        {%- for n in range(1, 5) %}
        {{ signals }}.s{{ n }}_{{ side }}{{ " or" if not loop.last }}
        {%- endfor %}, false)
{% endmacro %}
