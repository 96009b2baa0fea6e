{#- For the incremental candle models: raw points loaded after this instant have not been turned into
    candles of {{ this }} yet. The latest `source_loaded_at` already processed, minus the var
    `incremental_safety` (a load still committing while the last run read the raw table). Read before
    the model's query and written into it as a literal (JSON renders a timestamptz in ISO 8601 with
    its offset, whatever the session's DateStyle and time zone): compared with a subquery, whose value
    the planner cannot know, the filter on loaded_at reads the recent rows of its index instead of the
    whole history. -#}
{% macro incremental_watermark() -%}
    {%- if execute -%}
        {%- set watermark_query -%}
            select to_json(
                coalesce(max(processed.source_loaded_at), '-infinity'::timestamptz)
                - interval '{{ var("incremental_safety") }}'
            ) #>> '{}'
            from {{ this }} as processed
        {%- endset -%}
        '{{ run_query(watermark_query).columns[0].values()[0] }}'::timestamptz
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of the candle models: removes the candles of pairs no longer configured (their raw points
    stay). The pairs present are found by a loose index scan of the (pair, ts) index, one probe per
    pair, so the check costs the same whatever the history; a full refresh builds configured pairs
    only. -#}
{% macro delete_unconfigured_pairs() -%}
    {%- if is_incremental() -%}
        with recursive present (pair) as (
            (select candles.pair from {{ this }} as candles order by candles.pair limit 1)
            union all
            select (
                select later.pair from {{ this }} as later
                where later.pair > present.pair
                order by later.pair limit 1
            )
            from present
            where present.pair is not null
        )

        -- = any(array(...)): the pairs to delete become one value, so the delete probes the index too
        delete from {{ this }}
        where pair = any(array(
            select present.pair from present
            where present.pair not in (select configured.pair from {{ ref('int_configured_pairs') }} as configured)
        ))
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of the candle models: a partial index on the unsampled candles (sample_count = 0), which
    the `gaps` view and the data-quality report read, so that read costs what the unsampled candles
    cost, not the history. dbt's `indexes` config has no where clause. Created once per table (a
    full refresh builds a new table: it gets its own); the name is PostgreSQL's choice, so the old
    table's index, still there while dbt swaps the two, never stands in for it. -#}
{% macro index_unsampled_candles() -%}
    do $index$
    begin
        if not exists (
            select 1 from pg_index
            where
                indrelid = '{{ this }}'::regclass
                and pg_get_expr(indpred, indrelid) = '(sample_count = 0)'
        ) then
            create index on {{ this }} (pair, ts) where sample_count = 0;
        end if;
    end
    $index$
{%- endmacro %}
