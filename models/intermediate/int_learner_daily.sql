-- One row per learner and active day: the single pass over events every mart builds on.
select
    e.learner_id,
    e.event_date,
    count(*) as events,
    {{ count_verbs(['completed', 'passed']) }} as completions,
    {{ count_verbs(var('social_verbs')) }} as social_actions,
    avg(e.score) as avg_score,
    sum(case when c.content_type = 'voluntary' then e.duration_minutes else 0 end) as voluntary_minutes
from {{ ref('stg_events') }} as e
left join {{ ref('stg_courses') }} as c on e.course_id = c.course_id
group by e.learner_id, e.event_date
