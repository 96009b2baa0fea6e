{#- Runs of unsampled buckets longer than the tolerance (vars gap_tolerance_1h / gap_tolerance_1d):
    what the nightly heal step re-fetches. -#}
select
    runs.pair,
    runs.timeframe,
    runs.gap_start,
    runs.gap_end,
    runs.missing_buckets
from ({{ unsampled_runs(ref('int_candles_1h'), '1h') }}) as runs
where runs.missing_buckets > {{ var('gap_tolerance_1h') | int }}

union all

select
    runs.pair,
    runs.timeframe,
    runs.gap_start,
    runs.gap_end,
    runs.missing_buckets
from ({{ unsampled_runs(ref('int_candles_1d'), '1d') }}) as runs
where runs.missing_buckets > {{ var('gap_tolerance_1d') | int }}
