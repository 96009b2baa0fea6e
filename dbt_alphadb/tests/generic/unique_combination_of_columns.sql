{#- Fails with every combination of the columns that more than one row holds. Rows as dbt's `where`
    config narrows them. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select
    {{ combination_of_columns | join(", ") }},
    count(*) as rows_with_this_key
from {{ model }}
group by {{ combination_of_columns | join(", ") }}
having count(*) > 1
{% endtest %}
