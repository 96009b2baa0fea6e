{#- Daily candles (UTC days) of every configured pair, rolled up from the hourly candles: those have
    no holes, so a day needs no fill of its own. Open, high and low come from the sampled hours (a
    filled hour carries an earlier close), close, volume and market cap from the day's last hour
    (the last sampled one, or a filled one carrying its values).

    Incremental (config in _int__models.yml): a run rebuilds each pair from the day of its earliest
    hourly candle built from points loaded since the last run (or from its last day, if that is
    earlier, so that it turns complete). A pair without any daily candle is built from its first
    hour.

    A point the source re-serves without its price changes its hour but no hourly candle records
    that load: like a deleted raw point, it needs a --full-refresh to reach the daily candles. -#}
-- depends_on: {{ ref('int_configured_pairs') }} (read only by incremental runs)
with

hourly_candles as not materialized (
    select * from {{ ref('int_candles_1h') }}
),
{%- if is_incremental() %}

existing_candles as not materialized (
    select * from {{ this }}
),

configured_pairs as (
    select * from {{ ref('int_configured_pairs') }}
),

new_hours as (
    -- per pair, the earliest hourly candle built from points loaded since the last run
    select
        hourly_candles.pair,
        min(hourly_candles.ts) as first_new_ts
    from hourly_candles
    where hourly_candles.source_loaded_at > {{ incremental_watermark() }}
    group by hourly_candles.pair
),

rebuild_ranges as (
    -- from the day of the earliest new hour, or from the pair's last day if that is earlier (it
    -- turns complete); a pair without any daily candle: all of its hours
    select
        configured_pairs.pair,
        case
            when last_candle.ts is null then '-infinity'::timestamptz
            else least({{ bucket_start('new_hours.first_new_ts', '1d') }}, last_candle.ts)
        end as rebuild_from
    from configured_pairs
    left join new_hours on configured_pairs.pair = new_hours.pair
    left join lateral (
        select max(existing_candles.ts) as ts
        from existing_candles
        where existing_candles.pair = configured_pairs.pair
    ) as last_candle on true
    where new_hours.first_new_ts is not null or last_candle.ts is null
),

rebuilt_hours as (
    select rebuilt.*
    from rebuild_ranges
    inner join lateral (
        select hourly_candles.*
        from hourly_candles
        where hourly_candles.pair = rebuild_ranges.pair and hourly_candles.ts >= rebuild_ranges.rebuild_from
        -- a subquery per pair (offset 0: not flattened into a join): with many pairs the planner
        -- would rather read the whole table once than the rebuilt range of each pair; the (pair, ts)
        -- index returns it in ts order
        order by hourly_candles.ts
        offset 0
    ) as rebuilt on true
),
{%- endif %}

hours_to_roll_up as (
    select * from {{ "rebuilt_hours" if is_incremental() else "hourly_candles" }}
),

daily_candles as (
    select
        hours_to_roll_up.pair,
        {{ bucket_start('hours_to_roll_up.ts', '1d') }} as ts,
        coalesce(
            (array_agg(hours_to_roll_up.open order by hours_to_roll_up.ts) filter (
                where hours_to_roll_up.sample_count > 0
            ))[1],
            (array_agg(hours_to_roll_up.open order by hours_to_roll_up.ts))[1]
        ) as open,
        coalesce(
            max(hours_to_roll_up.high) filter (where hours_to_roll_up.sample_count > 0),
            max(hours_to_roll_up.high)
        ) as high,
        coalesce(
            min(hours_to_roll_up.low) filter (where hours_to_roll_up.sample_count > 0),
            min(hours_to_roll_up.low)
        ) as low,
        (array_agg(hours_to_roll_up.close order by hours_to_roll_up.ts))[count(*)] as close,
        (array_agg(hours_to_roll_up.volume order by hours_to_roll_up.ts))[count(*)] as volume,
        (array_agg(hours_to_roll_up.market_cap order by hours_to_roll_up.ts))[count(*)] as market_cap,
        sum(hours_to_roll_up.sample_count)::integer as sample_count,
        -- complete when its last hour is (a later point exists past the day's end)
        bool_and(hours_to_roll_up.is_complete) as is_complete,
        max(hours_to_roll_up.source_loaded_at) as source_loaded_at
    from hours_to_roll_up
    group by hours_to_roll_up.pair, {{ bucket_start('hours_to_roll_up.ts', '1d') }}
)

select
    daily_candles.pair,
    '1d'::text as timeframe,
    daily_candles.ts,
    daily_candles.open,
    daily_candles.high,
    daily_candles.low,
    daily_candles.close,
    daily_candles.volume,
    daily_candles.market_cap,
    daily_candles.sample_count,
    daily_candles.is_complete,
    daily_candles.source_loaded_at
from daily_candles
