{#- Runs of unsampled buckets longer than the tolerance (vars gap_tolerance_1h / gap_tolerance_1d):
    what the nightly heal step re-fetches. -#}
{%- for timeframe in ["1h", "1d"] %}
    select
        runs.pair,
        runs.timeframe,
        runs.gap_start,
        runs.gap_end,
        runs.missing_buckets
    from ({{ unsampled_runs(ref('int_candles_' ~ timeframe), timeframe) }}) as runs
    where runs.missing_buckets > {{ var('gap_tolerance_' ~ timeframe) | int }}
    {{ "union all" if not loop.last }}
{%- endfor %}
