{#- The per-pair views' contract: every view listed in `pairs` exists and has the columns of `ohlcv`
    but pair and timeframe, in that order and with the same types. Fails with one row per column
    that differs. -#}
with

pairs as (
    select * from {{ ref('pairs') }}
),

pair_views as (
    select pairs.hourly_relation as relation_name from pairs
    union all
    select pairs.daily_relation as relation_name from pairs
),

ohlcv_columns as (
    select
        catalog_columns.column_name,
        catalog_columns.data_type,
        row_number() over (order by catalog_columns.ordinal_position) as column_position
    from information_schema.columns as catalog_columns
    where
        catalog_columns.table_schema = '{{ ref("ohlcv").schema }}'
        and catalog_columns.table_name = '{{ ref("ohlcv").identifier }}'
        and catalog_columns.column_name not in ('pair', 'timeframe')
),

expected as (
    select
        pair_views.relation_name,
        ohlcv_columns.column_position,
        ohlcv_columns.column_name,
        ohlcv_columns.data_type
    from pair_views
    cross join ohlcv_columns
),

actual as (
    select
        catalog_columns.table_name as relation_name,
        catalog_columns.ordinal_position as column_position,
        catalog_columns.column_name,
        catalog_columns.data_type
    from information_schema.columns as catalog_columns
    inner join pair_views on catalog_columns.table_name = pair_views.relation_name
    where catalog_columns.table_schema = '{{ ref("pairs").schema }}'
)

select
    expected.column_name as expected_column,
    actual.column_name as actual_column,
    expected.data_type as expected_type,
    actual.data_type as actual_type,
    coalesce(expected.relation_name, actual.relation_name) as relation_name,
    coalesce(expected.column_position, actual.column_position) as column_position
from expected
full outer join actual
    on expected.relation_name = actual.relation_name and expected.column_position = actual.column_position
where
    expected.column_name is distinct from actual.column_name
    or expected.data_type is distinct from actual.data_type
