-- xAPI-style learning events, one row per statement.
select
    event_id,
    learner_id,
    verb,
    course_id,
    module_id,
    mandatory,
    score,
    duration_minutes,
    event_at,
    cast(event_at as date) as event_date
from {{ ref('lms_events') }}
where verb in ({% for verb in var('engagement_verbs') %}'{{ verb }}'{% if not loop.last %}, {% endif %}{% endfor %})
