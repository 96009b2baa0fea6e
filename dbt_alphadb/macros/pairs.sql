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

{#- Removes candles of pairs no longer configured (used as a post-hook of the candle models). -#}
{% macro delete_unconfigured_pairs() -%}
    {%- set names = [] -%}
    {%- for p in alphadb_pairs() -%}{%- do names.append("'" ~ p.name ~ "'") -%}{%- endfor -%}
    delete from {{ this }} where pair not in ({{ names | join(", ") }})
{%- endmacro %}
