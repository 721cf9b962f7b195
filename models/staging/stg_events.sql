{{ config(event_time='event_date') }}
-- xAPI statements flattened for analysis, with the learner's team.
select
    s.statement_id,
    s.actor_id as learner_id,
    l.team_id,
    s.verb,
    s.course_id,
    s.module_id,
    s.mandatory,
    s.result_score as score,
    s.result_success as success,
    s.result_duration_minutes as duration_minutes,
    s.context_due_date as due_date,
    s.event_at,
    -- The partition column of synthetic_events: a time-range run's filter on it skips files.
    s.event_date
from {{ ref('synthetic_events') }} as s
join {{ ref('stg_learners') }} as l on l.learner_id = s.actor_id
