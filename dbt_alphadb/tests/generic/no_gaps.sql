{#- Fails with one row per problem among the candles from tests_scope_start(), naming the pair and the
    range [gap_start, gap_end): a run of unsampled (forward-filled) buckets longer than the tolerance
    (default: the var gap_tolerance_<timeframe>), or a hole in the bucket sequence (a missing row,
    which the candle models never leave). -#}
{% test no_gaps(model, timeframe, tolerance=none) %}
{{ config(store_failures=true) }}
{%- set tolerance = var("gap_tolerance_" ~ timeframe) if tolerance is none else tolerance %}
select
    runs.pair,
    runs.timeframe,
    'gap'::text as problem,
    runs.gap_start,
    runs.gap_end,
    runs.missing_buckets
-- only the unsampled candles: the partial index on them serves each pair's range
from ({{ unsampled_runs(candles_in_tests_scope(model, where='sample_count = 0'), timeframe) }}) as runs
where runs.missing_buckets > {{ tolerance | int }}

union all

select
    holes.pair,
    holes.timeframe,
    'hole'::text as problem,
    holes.gap_start,
    holes.gap_end,
    holes.missing_buckets
from ({{ bucket_holes(candles_in_tests_scope(model), timeframe) }}) as holes
{% endtest %}
