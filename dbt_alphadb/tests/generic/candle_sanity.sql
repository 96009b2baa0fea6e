{#- Fails with every candle (from tests_scope_start()) whose prices contradict each other. -#}
{% test candle_sanity(model) %}
{{ config(store_failures=true) }}
select
    candles.pair,
    candles.ts,
    candles.open,
    candles.high,
    candles.low,
    candles.close,
    candles.volume,
    candles.sample_count
from {{ candles_in_tests_scope(model) }}
where
    candles.low > least(candles.open, candles.close)
    or candles.high < greatest(candles.open, candles.close)
    or candles.low <= 0
    or candles.open <= 0
    or candles.close <= 0
    or candles.volume < 0
    or candles.sample_count < 0
    or (
        candles.sample_count = 0
        and not (candles.open = candles.high and candles.high = candles.low and candles.low = candles.close)
    )
{% endtest %}
