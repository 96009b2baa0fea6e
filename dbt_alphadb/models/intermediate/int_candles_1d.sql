-- depends_on: {{ ref('stg_coingecko__market_chart_points') }}
{#- the raw points pick the days to rebuild in an incremental run; the hourly candles fill them -#}
{{ roll_up_candles('int_candles_1h', '1d') }}
