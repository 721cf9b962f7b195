{#- Deterministic pseudo-random numbers for the synthetic LMS data: a value in [0, 1) from up to
    three numeric keys and the project's lms_seed (the "fract(sin(x) * 43758.5453)" hash). -#}
{% macro hash01(a, b=0, c=0) -%}
(sin(cast({{ a }} as double) * 12.9898 + cast({{ b }} as double) * 78.233 + cast({{ c }} as double) * 37.719 + {{ var('lms_seed') }} * 0.3137) * 43758.5453 - floor(sin(cast({{ a }} as double) * 12.9898 + cast({{ b }} as double) * 78.233 + cast({{ c }} as double) * 37.719 + {{ var('lms_seed') }} * 0.3137) * 43758.5453))
{%- endmacro %}

{#- Number of teams for the configured number of learners (about 12 learners per team). -#}
{% macro team_count() -%}
{{ ((var('lms_learners') + 11) // 12) }}
{%- endmacro %}

{#- A timestamp `days` days and `minutes` minutes after the start of the synthetic history. -#}
{% macro synthetic_time(days, minutes) -%}
to_timestamp_nanos(cast(cast(date '{{ var('lms_start') }}' as timestamp) as bigint) + (cast({{ days }} as bigint) * 86400 + cast({{ minutes }} as bigint) * 60) * 1000000000)
{%- endmacro %}

{#- A zero-padded id such as 'T0042' that stays unique at any scale: `minimum` digits, or as many
    as the largest number below `count` needs (lpad cuts a longer number short). -#}
{% macro padded_id(prefix, number, count, minimum) -%}
'{{ prefix }}' || lpad(cast({{ number }} as varchar), {{ [minimum, (count | string | trim | length)] | max }}, '0')
{%- endmacro %}
