{#- Data tests of a nightly run check only the candles that can have changed (issue 6: the nightly cost
    must not grow with the history). dbt wraps the `model` of every generic test (built-in ones too)
    in get_where_subquery(); this override keeps dbt's `where` config and, when the var
    `tests_from_ts` is set, narrows candle relations (int_candles_*, ohlcv*) to `ts >= tests_from_ts`.
    pipelines/transform.py (tests_scope_start) computes it once per run: the earliest candle that an
    incremental run may have rebuilt from the points loaded since a given moment. Without the var
    (`dbt test`, `alphadb test`, the nightly's weekly run) every test sees all history. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get("where", "") -%}
    {%- set from_ts = var("tests_from_ts", none) -%}
    {%- set identifier = (relation.identifier or "") if relation is not string else "" -%}
    {%- set candles = identifier.startswith("int_candles_") or identifier.startswith("ohlcv") -%}
    {%- if not where and not (from_ts and candles) -%}
        {%- do return(relation) -%}
    {%- endif -%}
    {%- set conditions = [] -%}
    {%- if where -%}{%- do conditions.append("(" ~ where ~ ")") -%}{%- endif -%}
    {%- if from_ts and candles -%}
        {%- do conditions.append("scoped.ts >= '" ~ from_ts ~ "'::timestamptz") -%}
    {%- endif -%}
    {%- set filtered -%}
        (select * from {{ relation }} as scoped where {{ conditions | join(" and ") }}) as dbt_subquery
    {%- endset -%}
    {%- do return(filtered) -%}
{%- endmacro %}
