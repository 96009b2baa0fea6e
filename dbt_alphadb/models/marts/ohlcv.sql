{#- Every configured pair's candles of every timeframe in one relation. -#}
with

hourly_candles as (
    select * from {{ ref('int_candles_1h') }}
),

daily_candles as (
    select * from {{ ref('int_candles_1d') }}
),

all_candles as (
    select * from hourly_candles
    union all
    select * from daily_candles
)

select
    all_candles.pair,
    all_candles.timeframe,
    all_candles.ts,
    all_candles.open,
    all_candles.high,
    all_candles.low,
    all_candles.close,
    all_candles.volume,
    all_candles.market_cap,
    all_candles.sample_count,
    all_candles.is_complete
from all_candles
