{% test non_negative(model, column_name) %}
-- Rows where a quantity that cannot be negative (cash, shares, fees) is.
select {{ column_name }}
from {{ model }}
where {{ column_name }} < 0
{% endtest %}
