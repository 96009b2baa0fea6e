{#- The raw points of the configured pairs, named by pair, with the series they come from. A view:
    the candle models' filters on (coin_id, vs_currency, ts) and on loaded_at reach the raw table's
    indexes through it. -#}
with

points as (
    select * from {{ ref('stg_coingecko__market_chart_points') }}
),

configured_pairs as (
    select * from {{ ref('int_configured_pairs') }}
)

select
    configured_pairs.pair,
    points.ts,
    points.price,
    points.market_cap,
    points.total_volume,
    points.loaded_at,
    points.coin_id,
    points.vs_currency
from points
inner join configured_pairs
    on points.coin_id = configured_pairs.coin_id and points.vs_currency = configured_pairs.vs_currency
