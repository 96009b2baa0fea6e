{#- unique_combination_of_columns on the candles from tests_scope_start(): fails with every key (e.g.
    pair, timeframe, ts) that more than one of them holds. -#}
{% test unique_candle_key(model, columns) %}
    {{ test_unique_combination_of_columns(candles_in_tests_scope(model), columns) }}
{% endtest %}
