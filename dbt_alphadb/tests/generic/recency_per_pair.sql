{#- Fails for every configured pair whose latest complete candle is older than max_age (default: the
    var recency_max_age_<timeframe>), including a configured pair with no candle at all. Among the
    candles in the test scope, without the audit of whole histories: the latest is what it asks. -#}
{% test recency_per_pair(model, timeframe, max_age=none) %}
{{ config(store_failures=true) }}
{%- set max_age = var("recency_max_age_" ~ timeframe) if max_age is none else max_age %}
select
    configured.pair,
    latest.latest_complete_ts,
    '{{ max_age }}'::text as max_age
from {{ ref('int_configured_pairs') }} as configured
left join (
    select
        candles.pair,
        max(candles.ts) as latest_complete_ts
    from {{ candles_in_tests_scope(model, audit=false) }}
    where candles.is_complete
    group by candles.pair
) as latest on configured.pair = latest.pair
where
    latest.latest_complete_ts is null
    or latest.latest_complete_ts < now() - interval '{{ max_age }}'
{% endtest %}
