-- Weekly engagement per learner, with the week-over-week change of active days.
with weekly as (
    select
        d.learner_id,
        {{ week_start('d.event_date') }} as week_start,
        count(*) as active_days,
        sum(d.events) as events,
        sum(d.completions) as completions,
        sum(d.social_actions) as social_actions,
        avg(d.avg_score) as avg_score,
        sum(d.voluntary_minutes) as voluntary_minutes
    from {{ ref('int_learner_daily') }} as d
    group by d.learner_id, {{ week_start('d.event_date') }}
)
select
    w.learner_id,
    l.team_id,
    w.week_start,
    w.active_days,
    w.events,
    w.completions,
    w.social_actions,
    w.avg_score,
    w.voluntary_minutes,
    w.active_days - lag(w.active_days) over (partition by w.learner_id order by w.week_start) as active_days_change
from weekly as w
join {{ ref('stg_learners') }} as l on w.learner_id = l.learner_id
