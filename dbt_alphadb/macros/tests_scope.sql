{#- Where the candle tests start (a timestamptz expression): all history by default; with the var
    `tests_loaded_since` (the nightly job sets it on weekdays), the UTC day of the earliest candle an
    incremental run can have rebuilt from the points loaded since then. Per pair, a run rebuilds
    from the hour of the earliest new point or from the pair's last candle, i.e. from the last
    sampled hour before the first hour with new points (a run of filled hours is never cut in two);
    the earliest of these, floored to the day, covers the daily candles too. The source_loaded_at
    and (pair, ts) indexes keep this to the recent rows. Nothing loaded since: all history. -#}
{% macro tests_scope_start() -%}
    {%- set hourly_candles = ref('int_candles_1h') -%}
    {%- set since = var('tests_loaded_since', none) -%}
    {%- if since is none -%}
        '-infinity'::timestamptz
    {%- else -%}
        coalesce((
            select {{ bucket_start('min(coalesce(sampled_before.ts, recent.first_ts))', '1d') }}
            from (
                select
                    rebuilt.pair,
                    min(rebuilt.ts) as first_ts
                from {{ hourly_candles }} as rebuilt
                where rebuilt.source_loaded_at > '{{ since | replace("'", "''") }}'::timestamptz
                group by rebuilt.pair
            ) as recent
            left join lateral (
                select max(sampled.ts) as ts
                from {{ hourly_candles }} as sampled
                where sampled.pair = recent.pair and sampled.ts < recent.first_ts and sampled.sample_count > 0
            ) as sampled_before on true
        ), '-infinity'::timestamptz)
    {%- endif -%}
{%- endmacro %}

{#- `relation`'s rows from tests_scope_start() on, as a subquery named `alias`. -#}
{% macro candles_in_tests_scope(relation, alias="candles") -%}
    (select * from {{ relation }} as in_scope where in_scope.ts >= {{ tests_scope_start() }}) as {{ alias }}
{%- endmacro %}
