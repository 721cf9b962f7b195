{# Counts events whose verb is one of `verbs`. #}
{% macro count_verbs(verbs) -%}
sum(case when verb in ({% for verb in verbs %}'{{ verb }}'{% if not loop.last %}, {% endif %}{% endfor %}) then 1 else 0 end)
{%- endmacro %}

{# Monday of the week of a timestamp or date column. #}
{% macro week_start(column) -%}
cast(date_trunc('week', {{ column }}) as date)
{%- endmacro %}

{# a / b, or NULL when b is 0. #}
{% macro safe_ratio(numerator, denominator) -%}
cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0)
{%- endmacro %}
