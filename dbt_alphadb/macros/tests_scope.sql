{#- The nightly's test scope (docs/design.md, "Tests"). Without the var `tests_loaded_since` (plain
    `dbt test`, `alphadb test`), the candle tests read all history. With it (the nightly job sets it
    to a week ago), they read, per configured pair, the candles from tests_scope_start() on; and
    with the var `tests_audit_weekday` too (the nightly sets the UTC weekday, 0 = Monday), the whole
    history of the pairs whose audit_weekday() is that day: every pair's history is tested once a
    week, and each night reads about a seventh of the pairs' histories. -#}

{#- The weekday (0 = Monday ... 6 = Sunday) on which the nightly tests the whole history of the pair
    named by `pair` (a text expression): the first 28 bits of the MD5 of its name, modulo 7. Stable
    whatever the other pairs, so the audit of a pair never moves when pairs are added or removed. -#}
{% macro audit_weekday(pair) -%}
    mod(('x' || left(md5({{ pair }}), 7))::bit(28)::integer, 7)
{%- endmacro %}

{#- Where the candle tests of the recent loads start (a timestamptz expression): the UTC day of the
    earliest candle an incremental run can have rebuilt from the points loaded since the var
    `tests_loaded_since`. Per pair, a run rebuilds from the hour of the earliest new point or from
    the pair's last candle, i.e. from the last sampled hour before the first hour with new points
    (a run of filled hours is never cut in two); the earliest of these, floored to the day, covers
    the daily candles too. The source_loaded_at and (pair, ts) indexes keep this to the recent rows.
    Nothing loaded since: all history. -#}
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

{#- `relation`'s rows in the test scope, as a subquery named `alias`; `audit=false` leaves out the
    audit of whole histories (a test of the latest candles only); `where`, a condition on the
    relation's columns, keeps only the rows that meet it, inside each pair's index range (so a
    partial index, e.g. on the unsampled candles, can serve it). Scoped, one (pair, ts) index range
    per configured pair: the cost follows the rows in scope, not the history. `offset 0` keeps the
    lateral subquery a subquery: flattened into a join, the planner, which cannot know how few rows
    the scope holds, may read the whole table once instead of the scope of each pair (the index
    returns each pair's rows in ts order, so the order by costs nothing). -#}
{% macro candles_in_tests_scope(relation, alias="candles", audit=true, where=none) -%}
    {%- set audited = var('tests_audit_weekday', none) if audit else none -%}
    {%- if var('tests_loaded_since', none) is none -%}
        (select * from {{ relation }} where {{ where or 'true' }}) as {{ alias }}
    {%- else -%}
        {%- set from_ts = tests_scope_start() -%}
        {%- if audited is not none -%}
            {%- set from_ts -%}
                case
                    when scoped_pairs.audit_weekday = {{ audited | int }} then '-infinity'::timestamptz
                    else {{ from_ts }}
                end
            {%- endset -%}
        {%- endif -%}
        (
            select in_scope.*
            from {{ ref('int_configured_pairs') }} as scoped_pairs
            inner join lateral (
                select * from {{ relation }} as pair_candles
                where
                    pair_candles.pair = scoped_pairs.pair
                    and pair_candles.ts >= {{ from_ts }}
                    and ({{ where or 'true' }})
                order by pair_candles.ts
                offset 0
            ) as in_scope on true
        ) as {{ alias }}
    {%- endif -%}
{%- endmacro %}
