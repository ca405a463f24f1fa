{% test unique_combination(model, columns) %}
-- Rows whose combination of `columns` (the table's grain) is not unique.
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
