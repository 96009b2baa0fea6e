{#- One row per raw point of a configured pair, with the pair's name attached. A plain view: filters
    on loaded_at and ts reach the raw table's indexes. -#}
with

source as (
    select * from {{ source('coingecko', 'market_chart_points') }}
),

pairs as (
    select
        configured.pair,
        configured.coin_id,
        configured.vs_currency
    from {{ pairs_relation() }} as configured (pair, coin_id, vs_currency)
)

select
    pairs.pair,
    source.coin_id::text as coin_id,
    source.vs_currency::text as vs_currency,
    source.ts::timestamptz as ts,
    source.price::double precision as price,
    source.market_cap::double precision as market_cap,
    source.total_volume::double precision as total_volume,
    source.loaded_at::timestamptz as loaded_at
from source
inner join pairs
    on source.coin_id = pairs.coin_id and source.vs_currency = pairs.vs_currency
