{#- Candle timeframes. Widths are fixed lengths of time ('24 hours', never '1 day'): adding '1 day'
    to a timestamptz follows the session's calendar across daylight-saving changes. -#}
{% macro timeframe_width(timeframe) -%}
    {%- set widths = {"1h": "1 hour", "1d": "24 hours"} -%}
    {%- if timeframe not in widths -%}
        {{ exceptions.raise_compiler_error("unknown timeframe " ~ timeframe ~ ": use 1h or 1d") }}
    {%- endif -%}
    interval '{{ widths[timeframe] }}'
{%- endmacro %}

{#- The UTC start of the bucket holding `ts`, in any session time zone: date_bin bins a timestamptz in
    absolute time from an origin with an explicit UTC offset (date_trunc would use the session's zone). -#}
{% macro bucket_start(ts, timeframe) -%}
    date_bin({{ timeframe_width(timeframe) }}, {{ ts }}, timestamptz '2000-01-01 00:00:00+00')
{%- endmacro %}
