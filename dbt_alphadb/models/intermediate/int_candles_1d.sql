{{ build_candles('1d') }}
