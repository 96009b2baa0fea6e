{#- Custom schemas are used verbatim (dbt_staging, dbt_intermediate, dbt_test_failures), everything
    else goes to the target schema (public): dbt's default would prefix them as public_dbt_staging. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
