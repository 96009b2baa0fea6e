{#- The body of a generated per-pair mart (models/marts/pairs/ohlcv_<slug>[_1d].sql): the pair's
    candles of one timeframe, in the column order of DESIGN.md §3. -#}
{% macro pair_candles(pair, timeframe) -%}
    {%- if pair not in alphadb_pairs() | map(attribute="name") | list -%}
        {{ exceptions.raise_compiler_error(pair ~ " is not a configured pair: regenerate the pair models") }}
    {%- endif -%}
    select {{ candle_columns("candles") }}
    from {{ ref("int_candles_" ~ timeframe) }} as candles
    where candles.pair = '{{ pair }}'
{%- endmacro %}

{#- The candle columns of DESIGN.md §3, in order, qualified by `alias`. -#}
{% macro candle_columns(alias) -%}
    {%- for column in ["ts", "open", "high", "low", "close", "volume", "market_cap", "sample_count", "is_complete"] -%}
        {{ alias }}.{{ column }}{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
