{#- Hourly candles of every configured pair from the raw points, with no holes: an hour without a
    priced point carries the previous candle's close, volume and market cap (sample_count = 0).

    Incremental (config in _int__models.yml): a run rebuilds each pair from the hour of its earliest
    point loaded since the last run (or from its last candle, if that is earlier, so that it turns
    complete), re-reading every point of the rebuilt hours; the forward fill continues from the
    candle just before the rebuilt range. A pair without any candle yet is built from its first
    point. -#}
-- depends_on: {{ ref('int_configured_pairs') }} (read only by incremental runs)
with

pair_points as not materialized (
    select * from {{ ref('int_pair_points') }}
),
{%- if is_incremental() %}

existing_candles as not materialized (
    select * from {{ this }}
),

configured_pairs as (
    select * from {{ ref('int_configured_pairs') }}
),

new_points as (
    -- per pair, the earliest point loaded since the last run
    select
        pair_points.pair,
        min(pair_points.ts) as first_new_ts
    from pair_points
    where pair_points.loaded_at > {{ incremental_watermark() }}
    group by pair_points.pair
),

rebuild_ranges as (
    -- from the hour of the earliest new point, or from the pair's last candle if that is earlier
    -- (it turns complete); a pair without any candle (configured after its points were loaded): all
    select
        configured_pairs.pair,
        configured_pairs.coin_id,
        configured_pairs.vs_currency,
        case
            when last_candle.ts is null then '-infinity'::timestamptz
            else least({{ bucket_start('new_points.first_new_ts', '1h') }}, last_candle.ts)
        end as rebuild_from
    from configured_pairs
    left join new_points on configured_pairs.pair = new_points.pair
    left join lateral (
        select max(existing_candles.ts) as ts
        from existing_candles
        where existing_candles.pair = configured_pairs.pair
    ) as last_candle on true
    where new_points.first_new_ts is not null or last_candle.ts is null
),

candles_before_rebuild as (
    -- the forward fill of the rebuilt range starts from these (not rebuilt, not emitted)
    select
        rebuild_ranges.pair,
        previous.ts,
        previous.close,
        previous.volume,
        previous.market_cap
    from rebuild_ranges
    inner join lateral (
        select
            existing_candles.ts,
            existing_candles.close,
            existing_candles.volume,
            existing_candles.market_cap
        from existing_candles
        where existing_candles.pair = rebuild_ranges.pair and existing_candles.ts < rebuild_ranges.rebuild_from
        order by existing_candles.ts desc
        limit 1
    ) as previous on true
),

rebuilt_points as (
    -- one subquery per pair, each one range of the raw table's key (coin_id, vs_currency, ts): the
    -- series columns reach that index (the pair name only exists after the join with the pairs).
    -- offset 0 keeps it a subquery: flattened into a join, the planner, which cannot know how few
    -- hours are rebuilt, would rather read the whole raw table once than the range of each pair
    -- (the index returns each range in ts order, so the order by costs nothing)
    select rebuilt.*
    from rebuild_ranges
    inner join lateral (
        select pair_points.*
        from pair_points
        where
            pair_points.coin_id = rebuild_ranges.coin_id
            and pair_points.vs_currency = rebuild_ranges.vs_currency
            and pair_points.pair = rebuild_ranges.pair
            and pair_points.ts >= rebuild_ranges.rebuild_from
        order by pair_points.ts
        offset 0
    ) as rebuilt on true
),
{%- endif %}

priced_points as (
    select
        points.pair,
        points.ts,
        points.price,
        points.total_volume,
        points.market_cap,
        points.loaded_at
    from {{ "rebuilt_points" if is_incremental() else "pair_points" }} as points
    where points.price is not null
),

sampled_candles as (
    -- every ordered aggregate sorts by ts ascending, so PostgreSQL sorts the points once for all of
    -- them (and shares the price array between open and close); the last element is the latest point
    select
        priced_points.pair,
        {{ bucket_start('priced_points.ts', '1h') }} as ts,
        (array_agg(priced_points.price order by priced_points.ts))[1] as open,
        max(priced_points.price) as high,
        min(priced_points.price) as low,
        (array_agg(priced_points.price order by priced_points.ts))[count(*)] as close,
        (array_agg(priced_points.total_volume order by priced_points.ts))[count(*)] as volume,
        (array_agg(priced_points.market_cap order by priced_points.ts))[count(*)] as market_cap,
        count(*)::integer as sample_count,
        max(priced_points.loaded_at) as source_loaded_at,
        false as is_before_rebuild
    from priced_points
    group by priced_points.pair, {{ bucket_start('priced_points.ts', '1h') }}
),

sampled_with_next as (
    select
        candle_sequence.*,
        lead(candle_sequence.ts) over (partition by candle_sequence.pair order by candle_sequence.ts) as next_ts
    from (
        select * from sampled_candles
        {%- if is_incremental() %}

        union all

        select
            candles_before_rebuild.pair,
            candles_before_rebuild.ts,
            candles_before_rebuild.close as open,
            candles_before_rebuild.close as high,
            candles_before_rebuild.close as low,
            candles_before_rebuild.close,
            candles_before_rebuild.volume,
            candles_before_rebuild.market_cap,
            null::integer as sample_count,
            null::timestamptz as source_loaded_at,
            true as is_before_rebuild
        from candles_before_rebuild
        {%- endif %}
    ) as candle_sequence
),

filled_candles as (
    -- is_complete: a candle with a later sampled candle has ended before a later point (and so has
    -- every hour filled up to it); the pair's last candle holds its latest point, so it has not
    select
        sampled_with_next.pair,
        sampled_with_next.ts,
        sampled_with_next.open,
        sampled_with_next.high,
        sampled_with_next.low,
        sampled_with_next.close,
        sampled_with_next.volume,
        sampled_with_next.market_cap,
        sampled_with_next.sample_count,
        sampled_with_next.source_loaded_at,
        sampled_with_next.next_ts is not null as is_complete
    from sampled_with_next
    where not sampled_with_next.is_before_rebuild

    union all

    -- the unsampled hours up to the next sampled one carry this candle's close, volume, market cap
    select
        sampled_with_next.pair,
        unsampled.ts,
        sampled_with_next.close as open,
        sampled_with_next.close as high,
        sampled_with_next.close as low,
        sampled_with_next.close,
        sampled_with_next.volume,
        sampled_with_next.market_cap,
        0 as sample_count,
        null::timestamptz as source_loaded_at,
        true as is_complete
    from sampled_with_next
    cross join
        lateral generate_series(
            sampled_with_next.ts + {{ timeframe_width('1h') }},
            sampled_with_next.next_ts - {{ timeframe_width('1h') }},
            {{ timeframe_width('1h') }}
        ) as unsampled (ts)
    where sampled_with_next.next_ts > sampled_with_next.ts + {{ timeframe_width('1h') }}
)

select
    filled_candles.pair,
    '1h'::text as timeframe,
    filled_candles.ts,
    filled_candles.open,
    filled_candles.high,
    filled_candles.low,
    filled_candles.close,
    filled_candles.volume,
    filled_candles.market_cap,
    filled_candles.sample_count,
    filled_candles.is_complete,
    filled_candles.source_loaded_at
from filled_candles
