{#- Fails for every configured pair whose latest complete candle is older than max_age (default: the
    var recency_max_age_<timeframe>), including a configured pair with no candle at all. Whatever the
    test scope: the latest complete candle is found by reading the pair's (pair, ts) index backwards
    from its newest candle (only the newest can be incomplete), a row or two whatever the history. -#}
{% test recency_per_pair(model, timeframe, max_age=none) %}
{{ config(store_failures=true) }}
{%- set max_age = var("recency_max_age_" ~ timeframe) if max_age is none else max_age %}
select
    configured.pair,
    latest.latest_complete_ts,
    '{{ max_age }}'::text as max_age
from {{ ref('int_configured_pairs') }} as configured
left join lateral (
    select candles.ts as latest_complete_ts
    from {{ model }} as candles
    where candles.pair = configured.pair and candles.is_complete
    order by candles.ts desc
    limit 1
) as latest on true
where
    latest.latest_complete_ts is null
    or latest.latest_complete_ts < now() - interval '{{ max_age }}'
{% endtest %}
