{#- The raw points, typed. A plain view: filters on loaded_at and on (coin_id, vs_currency, ts) reach
    the raw table's indexes. -#}
with

source as (
    select * from {{ source('coingecko', 'market_chart_points') }}
),

renamed as (
    select
        coin_id::text as coin_id,
        vs_currency::text as vs_currency,
        ts::timestamptz as ts,
        price::double precision as price,
        market_cap::double precision as market_cap,
        total_volume::double precision as total_volume,
        loaded_at::timestamptz as loaded_at
    from source
)

select * from renamed
