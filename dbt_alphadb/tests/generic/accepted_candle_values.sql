{#- dbt's accepted_values on the candles in the test scope (candles_in_tests_scope: all history
    without the nightly's vars): fails with every value of `column_name` outside `values`. For the
    columns a model writes as a constant (e.g. timeframe): no audit of whole histories, the model's
    SQL built the recent candles in the scope too. -#}
{% test accepted_candle_values(model, column_name, values, quote=true) %}
    {%- set candles = candles_in_tests_scope(model, audit=false) %}
    {{ adapter.dispatch('test_accepted_values', 'dbt')(candles, column_name, values, quote) }}
{% endtest %}
