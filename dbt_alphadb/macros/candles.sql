{#- Candles of one timeframe for every configured pair (DESIGN.md §3), the body of int_candles_<tf>.

    Full refresh: every priced point of stg_coingecko__market_chart_points is bucketed.
    Incremental: only pairs with points loaded since the last processed load (minus a safety margin),
    or without any candle yet, are rebuilt, each from the start of the bucket of its earliest new
    point, or from its last existing candle if that is earlier (so that candle turns complete). The rebuild always starts
    on a bucket boundary and re-reads every point of the rebuilt buckets, so a bucket is never
    built from part of its points; the forward fill continues from the candle just before the
    rebuilt range (the anchor), so it stays right across the incremental edge. -#}
{% macro build_candles(timeframe) %}
{% set width = timeframe_width(timeframe) %}
with

{% if is_incremental() -%}
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
{%- if is_incremental() %}
    {#- one branch per configured pair: with the pair a constant and the rebuild start a scalar,
        the raw table's unique (coin_id, vs_currency, ts) index finds the rebuilt range -#}
{%- for pair in alphadb_pairs() %}
    select
        stg.pair,
        stg.ts,
        stg.price,
        stg.total_volume,
        stg.market_cap,
        stg.loaded_at
    from {{ ref('stg_coingecko__market_chart_points') }} as stg
    where
        stg.pair = '{{ pair.name }}'
        and stg.price is not null
        and stg.ts >= (select rebuild.from_ts from rebuild where rebuild.pair = '{{ pair.name }}')
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- else %}
    select
        stg.pair,
        stg.ts,
        stg.price,
        stg.total_volume,
        stg.market_cap,
        stg.loaded_at
    from {{ ref('stg_coingecko__market_chart_points') }} as stg
    where stg.price is not null
{%- endif %}
),

sampled as (
    select
        points.pair,
        {{ bucket_start('points.ts', timeframe) }} as ts,
        (array_agg(points.price order by points.ts asc))[1] as open,
        max(points.price) as high,
        min(points.price) as low,
        (array_agg(points.price order by points.ts desc))[1] as close,
        (array_agg(points.total_volume order by points.ts desc))[1] as volume,
        (array_agg(points.market_cap order by points.ts desc))[1] as market_cap,
        count(*)::integer as sample_count,
        max(points.loaded_at) as source_loaded_at,
        max(points.ts) as last_point_ts,
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
        null::timestamptz as last_point_ts,
        true as is_anchor
    from anchor
),
{%- endif %}

with_next as (
    select
        candles.*,
        lead(candles.ts) over (partition by candles.pair order by candles.ts) as next_ts,
        -- the pair's latest point, for is_complete: a window over the same partition, so no second
        -- pass over the points (and `points` stays a single-use, inlined CTE)
        max(candles.last_point_ts) over (partition by candles.pair) as pair_last_point_ts
    from {{ "anchored" if is_incremental() else "sampled" }} as candles
),

filled as (
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
        with_next.pair_last_point_ts
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
        with_next.pair_last_point_ts
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
    filled.ts + {{ width }} <= filled.pair_last_point_ts as is_complete,
    filled.source_loaded_at
from filled
{%- endmacro %}
