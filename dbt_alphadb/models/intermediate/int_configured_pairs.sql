{#- The var `pairs` (`BASE/QUOTE: coin_id:vs_currency`) as rows: one per configured pair, with the
    weekday on which the nightly tests its whole history. -#}
with

configured as (
    select
        pairs.key as pair,
        pairs.value as series
    from jsonb_each_text('{{ tojson(var("pairs")) | replace("'", "''") }}'::jsonb) as pairs
)

select
    configured.pair,
    split_part(configured.series, ':', 1) as coin_id,
    split_part(configured.series, ':', 2) as vs_currency,
    {{ audit_weekday('configured.pair') }} as audit_weekday
from configured
