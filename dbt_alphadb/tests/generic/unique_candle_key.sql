{#- unique_combination_of_columns on the candles from tests_scope_start(): fails with every key (e.g.
    pair, timeframe, ts) that more than one of them holds. No audit of whole histories: each candle
    table's unique (pair, ts) index rules out a duplicate in it, and the timeframe each table holds
    comes from its model's SQL, which built the recent candles in the scope too. -#}
{% test unique_candle_key(model, columns) %}
    {{ test_unique_combination_of_columns(candles_in_tests_scope(model, audit=false), columns) }}
{% endtest %}
