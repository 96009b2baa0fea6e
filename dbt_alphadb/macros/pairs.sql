{#- The configured pairs (pairs.conf or ALPHADB_PAIRS) reach dbt through the generated macro
    configured_pairs(), written by pipelines/pair_models.py. -#}
{% macro alphadb_pairs() -%}
    {%- if configured_pairs is not defined -%}
        {{ exceptions.raise_compiler_error(
            "macros/generated/configured_pairs.sql is missing: run `python -m pipelines.pair_models` "
            ~ "(or any alphadb command) to generate the pair models from pairs.conf"
        ) }}
    {%- endif -%}
    {{ return(configured_pairs()) }}
{%- endmacro %}

{#- The pairs as an inline relation (pair, coin_id, vs_currency), for joins. -#}
{% macro pairs_relation() -%}
    (values {% for p in alphadb_pairs() -%}
        ('{{ p.name }}', '{{ p.coin_id }}', '{{ p.vs_currency }}'){{ ", " if not loop.last }}
    {%- endfor %})
{%- endmacro %}

{#- Removes candles of pairs no longer configured (a post-hook of the candle models). The pairs present
    are found by a loose index scan of the (pair, ts) index, one probe per pair, so the nightly's
    check costs the same whatever the history; a full refresh builds configured pairs only. -#}
{% macro delete_unconfigured_pairs() -%}
    {%- set names = [] -%}
    {%- for p in alphadb_pairs() -%}{%- do names.append("'" ~ p.name ~ "'") -%}{%- endfor -%}
    {%- if is_incremental() -%}
    with recursive present (pair) as (
        (select done.pair from {{ this }} as done order by done.pair limit 1)
        union all
        select (
            select later.pair from {{ this }} as later
            where later.pair > present.pair
            order by later.pair limit 1
        )
        from present
        where present.pair is not null
    )

    -- = any(array(...)): the pairs to delete become one value, so the delete probes the index too
    delete from {{ this }}
    where pair = any(array(select present.pair from present where present.pair not in ({{ names | join(", ") }})))
    {%- endif -%}
{%- endmacro %}
