{#- Every configured pair's candles of every timeframe in one relation. -#}
select
    candles.pair,
    candles.timeframe,
    {{ candle_columns("candles") }}
from {{ ref('int_candles_1h') }} as candles

union all

select
    candles.pair,
    candles.timeframe,
    {{ candle_columns("candles") }}
from {{ ref('int_candles_1d') }} as candles
