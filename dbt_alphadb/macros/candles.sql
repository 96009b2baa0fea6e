{#- Candles of every configured pair (DESIGN.md §3): int_candles_1h from the raw points
    (build_candles), int_candles_1d from the hourly candles (roll_up_candles).

    Full refresh: every row of the input is bucketed.
    Incremental: only pairs with points loaded since the last processed load (minus a safety margin),
    or without any candle yet, are rebuilt, each from the start of the bucket of its earliest new
    point, or from its last existing candle if that is earlier (so that candle turns complete). The
    rebuild always starts on a bucket boundary and re-reads every input row of the rebuilt buckets,
    so a bucket is never built from part of its input. -#}

{#- The incremental rebuild's CTEs: `rebuild` holds (pair, from_ts) for every pair to rebuild. -#}
{% macro rebuild_ranges(timeframe) %}
watermark as (
    select
        coalesce(max(done.source_loaded_at), '-infinity'::timestamptz)
        - interval '{{ var("incremental_safety") }}' as loaded_since
    from {{ this }} as done
),

touched as (
    select
        stg.pair,
        min(stg.ts) as first_new_ts
    from {{ ref('stg_coingecko__market_chart_points') }} as stg
    where stg.loaded_at > (select watermark.loaded_since from watermark)
    group by stg.pair

    union all

    -- a pair configured after its points were loaded has no candle yet: built from its first point
    select
        configured.pair,
        (
            select min(stg.ts)
            from {{ ref('stg_coingecko__market_chart_points') }} as stg
            where stg.pair = configured.pair
        ) as first_new_ts
    from {{ pairs_relation() }} as configured (pair, coin_id, vs_currency)
    where not exists (select 1 from {{ this }} as done where done.pair = configured.pair)
),

rebuild as (
    select
        touched.pair,
        least({{ bucket_start('min(touched.first_new_ts)', timeframe) }}, max(last_candle.ts)) as from_ts
    from touched
    left join lateral (
        select max(done.ts) as ts
        from {{ this }} as done
        where done.pair = touched.pair
    ) as last_candle on true
    where touched.first_new_ts is not null
    group by touched.pair
),
{% endmacro %}

{#- The rows of `relation` to bucket: all of them on a full refresh; in an incremental run, one branch
    per configured pair (with the pair a constant and the rebuild start a scalar, the relation's
    (pair, ts) index finds the rebuilt range). -#}
{% macro rows_to_bucket(relation, columns, condition="true") %}
{%- if is_incremental() %}
{%- for pair in alphadb_pairs() %}
    select
        source_rows.{{ columns | join(",\n        source_rows.") }}
    from {{ relation }} as source_rows
    where
        source_rows.pair = '{{ pair.name }}'
        and {{ condition }}
        and source_rows.ts >= (select rebuild.from_ts from rebuild where rebuild.pair = '{{ pair.name }}')
    {{ "union all" if not loop.last }}
{%- endfor %}
{%- else %}
    select
        source_rows.{{ columns | join(",\n        source_rows.") }}
    from {{ relation }} as source_rows
    where {{ condition }}
{%- endif %}
{% endmacro %}

{#- Candles from the raw points, with no holes: unsampled buckets after a sampled one carry its close,
    volume and market cap. In an incremental run the fill continues from the candle just before the
    rebuilt range (the anchor), so it stays right across the incremental edge. -#}
{% macro build_candles(timeframe) %}
{% set width = timeframe_width(timeframe) %}
with

{% if is_incremental() -%}
{{ rebuild_ranges(timeframe) }}

anchor as (
    select
        rebuild.pair,
        previous.ts,
        previous.close,
        previous.volume,
        previous.market_cap
    from rebuild
    inner join lateral (
        select
            done.ts,
            done.close,
            done.volume,
            done.market_cap
        from {{ this }} as done
        where done.pair = rebuild.pair and done.ts < rebuild.from_ts
        order by done.ts desc
        limit 1
    ) as previous on true
),

{%- endif %}

points as (
    {{- rows_to_bucket(
        ref('stg_coingecko__market_chart_points'),
        ["pair", "ts", "price", "total_volume", "market_cap", "loaded_at"],
        "source_rows.price is not null",
    ) }}
),

sampled as (
    -- every ordered aggregate sorts by ts ascending, so PostgreSQL sorts the input once for all of
    -- them (and shares the price array between open and close); the last element is the latest point
    select
        points.pair,
        {{ bucket_start('points.ts', timeframe) }} as ts,
        (array_agg(points.price order by points.ts))[1] as open,
        max(points.price) as high,
        min(points.price) as low,
        (array_agg(points.price order by points.ts))[count(*)] as close,
        (array_agg(points.total_volume order by points.ts))[count(*)] as volume,
        (array_agg(points.market_cap order by points.ts))[count(*)] as market_cap,
        count(*)::integer as sample_count,
        max(points.loaded_at) as source_loaded_at,
        false as is_anchor
    from points
    group by 1, 2
),
{%- if is_incremental() %}

anchored as (
    select * from sampled

    union all

    select
        anchor.pair,
        anchor.ts,
        anchor.close as open,
        anchor.close as high,
        anchor.close as low,
        anchor.close,
        anchor.volume,
        anchor.market_cap,
        null::integer as sample_count,
        null::timestamptz as source_loaded_at,
        true as is_anchor
    from anchor
),
{%- endif %}

with_next as (
    select
        candles.*,
        lead(candles.ts) over (partition by candles.pair order by candles.ts) as next_ts
    from {{ "anchored" if is_incremental() else "sampled" }} as candles
),

filled as (
    -- is_complete: a candle with a later sampled candle has ended before a later point (and so has
    -- every bucket filled up to it); the pair's last candle holds its latest point, so it has not
    select
        with_next.pair,
        with_next.ts,
        with_next.open,
        with_next.high,
        with_next.low,
        with_next.close,
        with_next.volume,
        with_next.market_cap,
        with_next.sample_count,
        with_next.source_loaded_at,
        with_next.next_ts is not null as is_complete
    from with_next
    where not with_next.is_anchor

    union all

    -- the unsampled buckets up to the next sampled one carry this candle's close, volume, market cap
    select
        with_next.pair,
        unsampled.ts,
        with_next.close as open,
        with_next.close as high,
        with_next.close as low,
        with_next.close,
        with_next.volume,
        with_next.market_cap,
        0 as sample_count,
        null::timestamptz as source_loaded_at,
        true as is_complete
    from with_next
    cross join lateral generate_series(
        with_next.ts + {{ width }}, with_next.next_ts - {{ width }}, {{ width }}
    ) as unsampled (ts)
    where with_next.next_ts > with_next.ts + {{ width }}
)

select
    filled.pair,
    '{{ timeframe }}'::text as timeframe,
    filled.ts,
    filled.open,
    filled.high,
    filled.low,
    filled.close,
    filled.volume,
    filled.market_cap,
    filled.sample_count,
    filled.is_complete,
    filled.source_loaded_at
from filled
{%- endmacro %}

{#- Candles of a coarser timeframe from the candles of `finer` (a gap-free candle model whose buckets
    nest in this timeframe's, e.g. int_candles_1h): each bucket aggregates its finer candles, so it
    needs no fill of its own. Open, high and low come from the sampled finer candles only (a filled
    one carries an earlier close); close, volume and market cap from the last finer candle, which is
    the last sampled one or carries its values. Far fewer rows than the raw points once those are
    denser than the finer timeframe. -#}
{% macro roll_up_candles(finer, timeframe) %}
with

{% if is_incremental() -%}
{{ rebuild_ranges(timeframe) }}
{%- endif %}

finer as (
    {{- rows_to_bucket(
        ref(finer),
        ["pair", "ts", "open", "high", "low", "close", "volume", "market_cap", "sample_count", "is_complete",
         "source_loaded_at"],
    ) }}
)

select
    finer.pair,
    '{{ timeframe }}'::text as timeframe,
    {{ bucket_start('finer.ts', timeframe) }} as ts,
    coalesce(
        (array_agg(finer.open order by finer.ts) filter (where finer.sample_count > 0))[1],
        (array_agg(finer.open order by finer.ts))[1]
    ) as open,
    coalesce(max(finer.high) filter (where finer.sample_count > 0), max(finer.high)) as high,
    coalesce(min(finer.low) filter (where finer.sample_count > 0), min(finer.low)) as low,
    (array_agg(finer.close order by finer.ts))[count(*)] as close,
    (array_agg(finer.volume order by finer.ts))[count(*)] as volume,
    (array_agg(finer.market_cap order by finer.ts))[count(*)] as market_cap,
    sum(finer.sample_count)::integer as sample_count,
    -- complete when its last finer candle is (a later point exists past the bucket's end)
    bool_and(finer.is_complete) as is_complete,
    max(finer.source_loaded_at) as source_loaded_at
from finer
group by 1, 3
{%- endmacro %}
