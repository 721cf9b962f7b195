-- Weekly engagement per team: how many of its learners were active, and what they achieved.
with team_size as (
    select team_id, count(*) as learners
    from {{ ref('stg_learners') }}
    group by team_id
),
weekly as (
    select
        team_id,
        week_start,
        sum(case when active_days >= {{ var('min_active_days') }} then 1 else 0 end) as active_learners,
        sum(completions) as completions,
        avg(avg_score) as avg_score
    from {{ ref('learner_weekly_engagement') }}
    group by team_id, week_start
)
select
    w.team_id,
    w.week_start,
    s.learners,
    w.active_learners,
    {{ safe_ratio('w.active_learners', 's.learners') }} as active_rate,
    w.completions,
    w.avg_score,
    {{ safe_ratio('w.active_learners', 's.learners') }}
        - lag({{ safe_ratio('w.active_learners', 's.learners') }}) over (partition by w.team_id order by w.week_start) as active_rate_change
from weekly as w
join team_size as s on w.team_id = s.team_id
