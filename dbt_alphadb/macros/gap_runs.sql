{#- Runs of consecutive unsampled buckets (sample_count = 0) in a candle relation with columns pair, ts
    and sample_count: one row per run with its first bucket (gap_start), the end of its last bucket
    (gap_end, exclusive: re-fetching [gap_start, gap_end) heals it) and its length in buckets.
    `relation` is wrapped in a select: in a test it is an aliased subquery (tests/generic/no_gaps.sql). -#}
{% macro unsampled_runs(relation, timeframe) -%}
    select
        unsampled.pair,
        '{{ timeframe }}'::text as timeframe,
        min(unsampled.ts) as gap_start,
        max(unsampled.ts) + {{ timeframe_width(timeframe) }} as gap_end,
        count(*)::integer as missing_buckets
    from (
        select
            candles.pair,
            candles.ts,
            -- constant along a run of consecutive buckets (the islands technique)
            candles.ts
            - row_number() over (partition by candles.pair order by candles.ts)
            * {{ timeframe_width(timeframe) }} as run_key
        from (select * from {{ relation }}) as candles
        where candles.sample_count = 0
    ) as unsampled
    group by unsampled.pair, unsampled.run_key
{%- endmacro %}

{#- Holes in a pair's bucket sequence: consecutive candles further apart than one bucket. -#}
{% macro bucket_holes(relation, timeframe) -%}
    select
        steps.pair,
        '{{ timeframe }}'::text as timeframe,
        steps.ts + {{ timeframe_width(timeframe) }} as gap_start,
        steps.next_ts as gap_end,
        (
            extract(epoch from steps.next_ts - steps.ts)
            / extract(epoch from {{ timeframe_width(timeframe) }})
        )::integer - 1 as missing_buckets
    from (
        select
            candles.pair,
            candles.ts,
            lead(candles.ts) over (partition by candles.pair order by candles.ts) as next_ts
        from (select * from {{ relation }}) as candles
    ) as steps
    where steps.next_ts - steps.ts <> {{ timeframe_width(timeframe) }}
{%- endmacro %}
