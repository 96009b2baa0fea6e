{#- Custom schemas are used verbatim (alphadb_staging, alphadb_intermediate), everything else goes
    to the target schema (public): dbt's default would prefix them as public_alphadb_staging. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
