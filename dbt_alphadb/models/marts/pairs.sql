{#- The configured pairs and the names of their candle views. The post-hook (macros/pair_views.sql)
    keeps those views in step with this list: it creates the views of the pairs listed here and drops
    the ones it made for pairs no longer listed. -#}
-- depends_on: {{ ref('int_candles_1h') }} (the hourly views read it)
-- depends_on: {{ ref('int_candles_1d') }} (the daily views read it)
with

configured_pairs as (
    select * from {{ ref('int_configured_pairs') }}
),

named as (
    select
        configured_pairs.pair,
        configured_pairs.coin_id,
        configured_pairs.vs_currency,
        'ohlcv_' || lower(replace(configured_pairs.pair, '/', '_')) as relation_stem
    from configured_pairs
)

select
    named.pair,
    named.coin_id,
    named.vs_currency,
    named.relation_stem as hourly_relation,
    named.relation_stem || '_1d' as daily_relation
from named
