-- Synthetic xAPI-style LMS statements (actor, verb, object, result, context), deterministic for
-- a given lms_seed. Healthy learners vary ±8% week to week; everyone dips in a holiday week and
-- spikes in a content-launch week; planted learners and teams change from their change day; the
-- benefits pilot's treated learners move voluntary sessions to the benefits course from its
-- start; and a reporting-lag gap loses most statements for a few days.
--
-- Incremental like an LMS export: one partition folder per day (`event_date=2026-11-15/`); a run
-- after `lms_days` grew generates the new days (and the last day it holds again). Nothing of a
-- day depends on later days, so the result equals a full rebuild.
{{ config(
    materialized='incremental',
    incremental_strategy='insert_overwrite',
    partition_by='event_date',
    event_time='event_date'
) }}
{% set first_day %}(select cast(max(event_date) as int) - cast(date '{{ var('lms_start') }}' as int) from {{ this }}){% endset %}
with days as (
    -- unnest(range()) rather than `from range()`: table functions do not travel to a Ballista cluster.
    select day from (select unnest(range(0, {{ var('lms_days') }})) as day) as all_days
    {% if is_incremental() %}
    -- Completions land up to 8 days after their assignment.
    where day >= {{ first_day }} - 9
    {% endif %}
),
learner_days as (
    select
        l.learner_id, l.learner_number, l.team_id, l.daily_rate, l.skill, l.planted_shape, l.change_day,
        l.left_day,
        t.planted_team_drop, t.team_change_day,
        -- The benefits pilot: the day a treated learner's nudges begin (NULL for the others).
        p.nudge_day,
        d.day,
        cast(d.day / 7 as bigint) as week
    -- Days first: a cross join streams its right side, so each output batch is one day of
    -- every learner (thousands of rows) rather than one learner's days.
    from days as d
    cross join ({{ ref('synthetic_learners') }} as l
        join {{ ref('synthetic_teams') }} as t on t.team_id = l.team_id
        left join (
            -- The arms tidemark drew for the pilot (learner_engagement.yml, interventions).
            select learner_id, cast(start_date as int) - cast(date '{{ var('lms_start') }}' as int) as nudge_day
            from {{ ref('learner_engagement_intervention_arms') }}
            where intervention = 'benefits_nudge' and arm = 'treatment'
        ) as p on p.learner_id = l.learner_id)
),
rates as (
    select *,
        greatest(0.0, least(1.0, cast(day - change_day as double) / 42.0)) as progress,
        daily_rate
        * (1 + 0.16 * ({{ hash01('learner_number', 'week', 21) }} - 0.5))
        * case when day % 7 in (5, 6) then 0.35 else 1.0 end
        * case when day between {{ var('lms_holiday_day') }} and {{ var('lms_holiday_day') }} + 6 then 0.6 else 1.0 end
        * case when day between {{ var('lms_launch_day') }} and {{ var('lms_launch_day') }} + 6 then 1.5 else 1.0 end
        * case when planted_team_drop and day >= team_change_day then 0.8 else 1.0 end
        -- A learner who left makes no more statements.
        * case when day >= left_day then 0.0 else 1.0 end
        * case
            when day < change_day then 1.0
            when planted_shape = 'sudden' then 0.15
            when planted_shape = 'gradual' then greatest(0.15, 1.0 - 0.85 * cast(day - change_day as double) / 42.0)
            when planted_shape = 'social_withdrawal' then 0.5
            when planted_shape = 'score_erosion' then 0.5
            when planted_shape = 'skipping_mandatory' then 0.5
            else 1.0
          end as rate
    from learner_days
),
slot_candidates as (
    -- Nine candidate slots a day; unnest in the select list rather than a cross join, so the
    -- slot filter runs on whole batches instead of row by row in a nested-loop join.
    select *, unnest(range(0, 9)) as slot from rates
),
slots as (
    select c.*, {{ hash01('c.learner_number * 16 + c.slot', 'c.day', 31) }} as u_verb,
        {{ hash01('c.learner_number * 16 + c.slot', 'c.day', 32) }} as u_object,
        {{ hash01('c.learner_number * 16 + c.slot', 'c.day', 33) }} as u_result,
        {{ hash01('c.learner_number * 16 + c.slot', 'c.day', 34) }} as u_course
    from slot_candidates as c
    where {{ hash01('c.learner_number * 16 + c.slot', 'c.day', 30) }} < c.rate / 9.0
),
activity as (
    select
        learner_id, learner_number, team_id, day, slot, planted_shape, change_day,
        case
            when u_verb < 0.26 then 'launched'
            when u_verb < 0.55 then 'experienced'
            when u_verb < 0.66 then 'completed'
            when u_verb < 0.78 then 'assessed'
            when planted_shape = 'social_withdrawal' and day >= change_day then 'experienced'
            when u_verb < 0.88 then 'commented'
            when u_verb < 0.94 then 'posted'
            else 'reviewed'
        end as kind,
        -- Voluntary sessions (courses 8-39) go to the benefits course C040 3% of the time; a
        -- treated learner's nudges raise that to 25% from their start (the planted effect).
        case when floor(u_object * 40) >= 8
                  and u_course < case when day >= nudge_day then 0.25 else 0.03 end
             then cast(40 as bigint) else cast(floor(u_object * 40) as bigint) end as course_number,
        coalesce(floor(u_object * 40) >= 8 and day >= nudge_day and u_course >= 0.03 and u_course < 0.25, false) as planted_nudge,
        skill + 16 * (u_result - 0.5) - case when planted_shape = 'score_erosion' then 30 * progress else 0 end as raw_score,
        cast(5 + floor(u_result * 50) as bigint) as duration_minutes,
        cast(floor(u_object * 600) as bigint) as minute_of_day
    from slots
),
activity_statements as (
    select
        learner_id || '-' || cast(day as varchar) || '-' || cast(slot as varchar) as statement_id,
        learner_id,
        day,
        case when kind = 'assessed' then case when raw_score >= 60 then 'passed' else 'failed' end else kind end as verb,
        'C' || lpad(cast(course_number as varchar), 3, '0') as course_id,
        'C' || lpad(cast(course_number as varchar), 3, '0') || '-M' || cast(day % 5 as varchar) as module_id,
        course_number < 8 as mandatory,
        case when kind = 'assessed' then round(least(100.0, greatest(0.0, raw_score)), 1) end as score,
        case when kind = 'assessed' then raw_score >= 60 end as success,
        duration_minutes,
        cast(null as date) as due_date,
        minute_of_day + 480 as minute,
        learner_number * 16 + slot as gap_key,
        planted_nudge
    from activity
),
assignments as (
    -- Every Monday each learner is assigned a mandatory module, due ten days later.
    select
        l.learner_id, l.learner_number, l.planted_shape, l.change_day, d.day,
        'M' || lpad(cast(d.day as varchar), 3, '0') as module_number
    from days as d
    cross join {{ ref('synthetic_learners') }} as l
    where d.day % 7 = 0 and (l.left_day is null or d.day < l.left_day)
),
assignment_statements as (
    -- Each assignment gives an 'assigned' statement (k = 0) and, for most learners, a
    -- 'completed' one up to 8 days later (k = 1): both from one row, by an unnest in the select
    -- list rather than a union (a Ballista 55 cluster never finishes a union of three or more
    -- join inputs) or a cross join (a nested-loop join evaluates its filter row by row).
    select
        learner_id || '-' || cast(day as varchar) || case when k = 0 then '-assigned' else '-done' end as statement_id,
        learner_id,
        case when k = 0 then day else day + cast(floor({{ hash01('learner_number', 'day', 41) }} * 9) as bigint) end as day,
        case when k = 0 then 'assigned' else 'completed' end as verb,
        'C00' || cast(day % 8 as varchar) as course_id,
        'C00' || cast(day % 8 as varchar) || '-' || module_number as module_id,
        true as mandatory, cast(null as double) as score, cast(null as boolean) as success,
        case when k = 0 then cast(0 as bigint) else cast(20 + floor({{ hash01('learner_number', 'day', 42) }} * 30) as bigint) end as duration_minutes,
        case when k = 0 then cast(cast(date '{{ var('lms_start') }}' as int) + day + 10 as date) end as due_date,
        case when k = 0 then 420 else 600 end as minute,
        learner_number * 16 + 14 + k as gap_key,
        false as planted_nudge
    from (select *, unnest(range(0, 2)) as k from assignments) as kinds
    where k = 0 or {{ hash01('learner_number', 'day', 43) }} < case
        when planted_shape = 'skipping_mandatory' and day >= change_day then 0.15
        when planted_shape in ('sudden', 'gradual') and day >= change_day then 0.4
        else 0.93
    end
),
statements as (
    select * from activity_statements
    union all
    select * from assignment_statements
)
select
    statement_id,
    learner_id as actor_id,
    verb,
    module_id as object_id,
    course_id,
    module_id,
    mandatory,
    score as result_score,
    success as result_success,
    duration_minutes as result_duration_minutes,
    due_date as context_due_date,
    -- Ground truth, not passed to staging: a session on C040 only the pilot's nudge caused.
    planted_nudge,
    {{ synthetic_time('day', 'minute') }} as event_at,
    cast(cast(date '{{ var('lms_start') }}' as int) + day as date) as event_date
from statements
where day < {{ var('lms_days') }}
  {% if is_incremental() %}
  and day >= {{ first_day }}
  {% endif %}
  -- The reporting-lag gap: most statements of these days never arrive.
  and not (day between {{ var('lms_gap_day') }} and {{ var('lms_gap_day') }} + 3
           and {{ hash01('gap_key', 'day', 51) }} < 0.8)
