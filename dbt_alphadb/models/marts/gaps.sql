{#- Runs of unsampled buckets longer than the tolerance (vars gap_tolerance_1h / gap_tolerance_1d):
    what the nightly heal step re-fetches. -#}
with

hourly_candles as (
    select * from {{ ref('int_candles_1h') }}
),

daily_candles as (
    select * from {{ ref('int_candles_1d') }}
),

hourly_runs as (
    {{ unsampled_runs('hourly_candles', '1h') }}
),

daily_runs as (
    {{ unsampled_runs('daily_candles', '1d') }}
),

gaps as (
    select * from hourly_runs
    where missing_buckets > {{ var('gap_tolerance_1h') | int }}

    union all

    select * from daily_runs
    where missing_buckets > {{ var('gap_tolerance_1d') | int }}
)

select
    gaps.pair,
    gaps.timeframe,
    gaps.gap_start,
    gaps.gap_end,
    gaps.missing_buckets
from gaps
