{#- dbt's cross-database macros, written for DataFusion: the `dbt` namespace (`dbt.concat(...)`,
    also callable unqualified). Each dispatches, as dbt's do, so a project or package may
    define `datafusion__<name>` to replace one. -#}

{% macro concat(fields) %}{{ return(adapter.dispatch('concat', 'dbt')(fields)) }}{% endmacro %}
{% macro default__concat(fields) -%}
    {{ fields | join(' || ') }}
{%- endmacro %}

{% macro hash(field) %}{{ return(adapter.dispatch('hash', 'dbt')(field)) }}{% endmacro %}
{% macro default__hash(field) -%}
    md5(cast({{ field }} as varchar))
{%- endmacro %}

{% macro type_string() %}{{ return(adapter.dispatch('type_string', 'dbt')()) }}{% endmacro %}
{% macro default__type_string() %}varchar{% endmacro %}
{% macro type_timestamp() %}{{ return(adapter.dispatch('type_timestamp', 'dbt')()) }}{% endmacro %}
{% macro default__type_timestamp() %}timestamp{% endmacro %}
{% macro type_int() %}{{ return(adapter.dispatch('type_int', 'dbt')()) }}{% endmacro %}
{% macro default__type_int() %}integer{% endmacro %}
{% macro type_bigint() %}{{ return(adapter.dispatch('type_bigint', 'dbt')()) }}{% endmacro %}
{% macro default__type_bigint() %}bigint{% endmacro %}
{% macro type_float() %}{{ return(adapter.dispatch('type_float', 'dbt')()) }}{% endmacro %}
{% macro default__type_float() %}double{% endmacro %}
{% macro type_numeric() %}{{ return(adapter.dispatch('type_numeric', 'dbt')()) }}{% endmacro %}
{% macro default__type_numeric() %}decimal(28, 6){% endmacro %}
{% macro type_boolean() %}{{ return(adapter.dispatch('type_boolean', 'dbt')()) }}{% endmacro %}
{% macro default__type_boolean() %}boolean{% endmacro %}

{% macro safe_cast(field, type) %}{{ return(adapter.dispatch('safe_cast', 'dbt')(field, type)) }}{% endmacro %}
{% macro default__safe_cast(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}

{% macro dateadd(datepart, interval, from_date_or_timestamp) -%}
    {{ return(adapter.dispatch('dateadd', 'dbt')(datepart, interval, from_date_or_timestamp)) }}
{%- endmacro %}
{% macro default__dateadd(datepart, interval, from_date_or_timestamp) -%}
    ({{ from_date_or_timestamp }} + cast(cast({{ interval }} as varchar) || ' {{ datepart }}' as interval))
{%- endmacro %}

{% macro datediff(first_date, second_date, datepart) -%}
    {{ return(adapter.dispatch('datediff', 'dbt')(first_date, second_date, datepart)) }}
{%- endmacro %}
{% macro default__datediff(first_date, second_date, datepart) -%}
    date_diff('{{ datepart }}', {{ first_date }}, {{ second_date }})
{%- endmacro %}

{% macro date_trunc(datepart, date) %}{{ return(adapter.dispatch('date_trunc', 'dbt')(datepart, date)) }}{% endmacro %}
{% macro default__date_trunc(datepart, date) -%}
    date_trunc('{{ datepart }}', {{ date }})
{%- endmacro %}

{% macro last_day(date, datepart) %}{{ return(adapter.dispatch('last_day', 'dbt')(date, datepart)) }}{% endmacro %}
{% macro default__last_day(date, datepart) -%}
    cast(date_trunc('{{ datepart }}', {{ date }}) + interval '1 {{ datepart }}' - interval '1 day' as date)
{%- endmacro %}

{% macro split_part(string_text, delimiter_text, part_number) -%}
    {{ return(adapter.dispatch('split_part', 'dbt')(string_text, delimiter_text, part_number)) }}
{%- endmacro %}
{% macro default__split_part(string_text, delimiter_text, part_number) -%}
    split_part({{ string_text }}, {{ delimiter_text }}, {{ part_number }})
{%- endmacro %}

{% macro listagg(measure, delimiter_text="','", order_by_clause=none, limit_num=none) -%}
    {{ return(adapter.dispatch('listagg', 'dbt')(measure, delimiter_text, order_by_clause, limit_num)) }}
{%- endmacro %}
{% macro default__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- if limit_num -%}
    array_to_string(array_slice(array_agg({{ measure }} {{ order_by_clause or '' }}), 1, {{ limit_num }}), {{ delimiter_text }})
    {%- else -%}
    string_agg({{ measure }}, {{ delimiter_text }} {{ order_by_clause or '' }})
    {%- endif -%}
{%- endmacro %}

{% macro any_value(expression) %}{{ return(adapter.dispatch('any_value', 'dbt')(expression)) }}{% endmacro %}
{% macro default__any_value(expression) %}any_value({{ expression }}){% endmacro %}

{% macro bool_or(expression) %}{{ return(adapter.dispatch('bool_or', 'dbt')(expression)) }}{% endmacro %}
{% macro default__bool_or(expression) %}bool_or({{ expression }}){% endmacro %}

{% macro cast_bool_to_text(field) %}{{ return(adapter.dispatch('cast_bool_to_text', 'dbt')(field)) }}{% endmacro %}
{% macro default__cast_bool_to_text(field) %}cast({{ field }} as varchar){% endmacro %}

{% macro current_timestamp() %}{{ return(adapter.dispatch('current_timestamp', 'dbt')()) }}{% endmacro %}
{% macro default__current_timestamp() %}now(){% endmacro %}

{% macro escape_single_quotes(expression) -%}
    {{ return(adapter.dispatch('escape_single_quotes', 'dbt')(expression)) }}
{%- endmacro %}
{% macro default__escape_single_quotes(expression) %}{{ expression | replace("'", "''") }}{% endmacro %}

{% macro except() %}{{ return(adapter.dispatch('except', 'dbt')()) }}{% endmacro %}
{% macro default__except() %}except{% endmacro %}
{% macro intersect() %}{{ return(adapter.dispatch('intersect', 'dbt')()) }}{% endmacro %}
{% macro default__intersect() %}intersect{% endmacro %}

{% macro position(substring_text, string_text) -%}
    {{ return(adapter.dispatch('position', 'dbt')(substring_text, string_text)) }}
{%- endmacro %}
{% macro default__position(substring_text, string_text) -%}
    strpos({{ string_text }}, {{ substring_text }})
{%- endmacro %}

{% macro length(expression) %}{{ return(adapter.dispatch('length', 'dbt')(expression)) }}{% endmacro %}
{% macro default__length(expression) %}length({{ expression }}){% endmacro %}

{% macro right(string_text, length_expression) -%}
    {{ return(adapter.dispatch('right', 'dbt')(string_text, length_expression)) }}
{%- endmacro %}
{% macro default__right(string_text, length_expression) -%}
    right({{ string_text }}, {{ length_expression }})
{%- endmacro %}

{% macro replace(field, old_chars, new_chars) -%}
    {{ return(adapter.dispatch('replace', 'dbt')(field, old_chars, new_chars)) }}
{%- endmacro %}
{% macro default__replace(field, old_chars, new_chars) -%}
    replace({{ field }}, {{ old_chars }}, {{ new_chars }})
{%- endmacro %}

{% macro string_literal(value) %}{{ return(adapter.dispatch('string_literal', 'dbt')(value)) }}{% endmacro %}
{% macro default__string_literal(value) %}'{{ value | replace("'", "''") }}'{% endmacro %}

{% macro array_construct(inputs=[], data_type=none) -%}
    {{ return(adapter.dispatch('array_construct', 'dbt')(inputs, data_type)) }}
{%- endmacro %}
{% macro default__array_construct(inputs, data_type) -%}
    {%- if inputs | length > 0 -%} make_array({{ inputs | join(', ') }})
    {%- else -%} make_array() {%- endif -%}
{%- endmacro %}

{% macro generate_series(upper_bound) -%}
    {{ return(adapter.dispatch('generate_series', 'dbt')(upper_bound)) }}
{%- endmacro %}
{% macro default__generate_series(upper_bound) -%}
    select unnest(range(1, {{ upper_bound }} + 1)) as generated_number
{%- endmacro %}
