{{ build_candles('1h') }}
