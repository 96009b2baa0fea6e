{#- Post-hook of the model `pairs`: for every pair it lists, the views `ohlcv_<base>_<quote>` (hourly
    candles) and `ohlcv_<base>_<quote>_1d` (daily), with the columns of `ohlcv` but pair and
    timeframe, in its order; the views it made for pairs no longer listed are dropped (their candles
    are gone, their raw points stay). Its views are recognised by their comment, which holds a hash
    of their definition: only missing or changed views are (re)created, so a nightly run with a
    thousand pairs issues no DDL. A view that other views depend on is not dropped: the run fails
    and says which. -#}
{% macro sync_pair_views() -%}
    {%- if execute -%}
        {%- set marker = "Candles of a configured pair, kept by the dbt model pairs; definition " -%}
        {%- set ohlcv = graph.nodes["model." ~ project_name ~ ".ohlcv"] -%}
        {%- set columns = ohlcv.columns.keys() | reject("in", ["pair", "timeframe"]) | join(", ") -%}
        {%- set listed = run_query("select pair, hourly_relation, daily_relation from " ~ this) -%}
        {%- set kept = run_query(
            "select views.relname, obj_description(views.oid, 'pg_class') from pg_class as views"
            ~ " where views.relnamespace = '" ~ this.schema ~ "'::regnamespace and views.relkind = 'v'"
            ~ " and obj_description(views.oid, 'pg_class') like '" ~ marker ~ "%'"
        ) -%}
        {%- set comments = dict(kept.rows | map("list") | list) -%}
        {%- set wanted = [] -%}
        {%- for pair in listed.rows -%}
            {%- for name, candles in [
                (pair.hourly_relation, ref("int_candles_1h")), (pair.daily_relation, ref("int_candles_1d"))
            ] -%}
                {%- set view = this.incorporate(path={"identifier": name}) -%}
                {%- set definition -%}
                    select {{ columns }} from {{ candles }} where pair = '{{ pair.pair | replace("'", "''") }}'
                {%- endset -%}
                {%- set comment = marker ~ local_md5(definition) -%}
                {%- do wanted.append(name) -%}
                {%- if comments.get(name) != comment %}
                    create or replace view {{ view }} as {{ definition }};
                    comment on view {{ view }} is '{{ comment }}';
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
        {%- for name in comments if name not in wanted %}
            drop view {{ this.incorporate(path={"identifier": name}) }};
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
