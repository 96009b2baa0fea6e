{#- Candles of one timeframe for every configured pair (DESIGN.md §3), the body of int_candles_<tf>.

    Full refresh: every priced point of stg_coingecko__market_chart_points is bucketed.
    Incremental: only pairs with points loaded since the last processed load (minus a safety margin)
    are rebuilt, each from the start of the bucket of its earliest new point, or from its last
    existing candle if that is earlier (so that candle turns complete). The rebuild always starts
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
),

rebuild as (
    select
        touched.pair,
        least({{ bucket_start('touched.first_new_ts', timeframe) }}, last_candle.ts) as from_ts
    from touched
    left join lateral (
        select max(done.ts) as ts
        from {{ this }} as done
        where done.pair = touched.pair
    ) as last_candle on true
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
    select
        stg.pair,
        stg.ts,
        stg.price,
        stg.total_volume,
        stg.market_cap,
        stg.loaded_at
    from {{ ref('stg_coingecko__market_chart_points') }} as stg
    {%- if is_incremental() %}
    inner join rebuild
        on stg.pair = rebuild.pair and stg.ts >= rebuild.from_ts
    {%- endif %}
    where stg.price is not null
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
        max(points.loaded_at) as source_loaded_at
    from points
    group by 1, 2
),

spans as (
    select
        sampled.pair,
        min(sampled.ts) as first_ts,
        max(sampled.ts) as last_ts
    from sampled
    group by sampled.pair
),

last_points as (
    select
        points.pair,
        max(points.ts) as last_point_ts
    from points
    group by points.pair
),

buckets as (
    select
        spans.pair,
        series.ts
    {%- if is_incremental() %}
    from spans
    inner join rebuild on spans.pair = rebuild.pair
    cross join lateral generate_series(rebuild.from_ts, spans.last_ts, {{ width }}) as series (ts)
    {%- else %}
    from spans
    cross join lateral generate_series(spans.first_ts, spans.last_ts, {{ width }}) as series (ts)
    {%- endif %}
),

timeline as (
    select
        buckets.pair,
        buckets.ts,
        false as is_anchor,
        sampled.open,
        sampled.high,
        sampled.low,
        sampled.close,
        sampled.volume,
        sampled.market_cap,
        sampled.sample_count,
        sampled.source_loaded_at
    from buckets
    left join sampled on buckets.pair = sampled.pair and buckets.ts = sampled.ts
    {%- if is_incremental() %}

    union all

    select
        anchor.pair,
        anchor.ts,
        true as is_anchor,
        anchor.close as open,
        anchor.close as high,
        anchor.close as low,
        anchor.close,
        anchor.volume,
        anchor.market_cap,
        null::integer as sample_count,
        null::timestamptz as source_loaded_at
    from anchor
    {%- endif %}
),

fill_groups as (
    -- every unsampled bucket joins the group of the latest candle with a close before it
    select
        timeline.*,
        count(timeline.close) over (partition by timeline.pair order by timeline.ts) as fill_group
    from timeline
),

filled as (
    select
        fill_groups.*,
        first_value(fill_groups.close) over fill_window as carried_close,
        first_value(fill_groups.volume) over fill_window as carried_volume,
        first_value(fill_groups.market_cap) over fill_window as carried_market_cap
    from fill_groups
    window fill_window as (partition by fill_groups.pair, fill_groups.fill_group order by fill_groups.ts)
)

select
    filled.pair,
    '{{ timeframe }}'::text as timeframe,
    filled.ts,
    coalesce(filled.open, filled.carried_close) as open,
    coalesce(filled.high, filled.carried_close) as high,
    coalesce(filled.low, filled.carried_close) as low,
    coalesce(filled.close, filled.carried_close) as close,
    case when filled.sample_count is null then filled.carried_volume else filled.volume end as volume,
    case
        when filled.sample_count is null then filled.carried_market_cap else filled.market_cap
    end as market_cap,
    coalesce(filled.sample_count, 0) as sample_count,
    filled.ts + {{ width }} <= last_points.last_point_ts as is_complete,
    filled.source_loaded_at
from filled
inner join last_points on filled.pair = last_points.pair
where not filled.is_anchor and filled.carried_close is not null
{%- endmacro %}
