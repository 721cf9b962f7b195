-- The playbook's retention KPI: of the learners flagged in a week (a new disengagement_risk
-- case) and of those never flagged so far, still employed that week, the share still employed
-- 30, 60 and 90 days later (the HRIS's left_on). A share is NULL until the history reaches that
-- far past the week.
with as_of as (
    select max(period_end) as as_of from {{ ref('learner_engagement', event_time=false) }}
),
periods as (
    select distinct period_end from {{ ref('learner_engagement', event_time=false) }}
),
learners as (
    select learner_id, left_on from {{ ref('stg_learners') }}
),
flagged as (
    select distinct learner_id, opened_period as period_end
    from {{ ref('learner_engagement_alert_cases') }}
    where rule = 'disengagement_risk'
),
first_flagged as (
    select learner_id, min(period_end) as first_flagged from flagged group by learner_id
),
cohorts as (
    select f.period_end, 'flagged' as cohort, l.learner_id, l.left_on
    from flagged as f
    join learners as l on l.learner_id = f.learner_id
    where l.left_on is null or l.left_on > f.period_end
    union all
    select p.period_end, 'unflagged' as cohort, l.learner_id, l.left_on
    from periods as p
    cross join learners as l
    left join first_flagged as f on f.learner_id = l.learner_id
    where (l.left_on is null or l.left_on > p.period_end)
      and (f.first_flagged is null or f.first_flagged > p.period_end)
)
select
    c.period_end,
    c.cohort,
    count(*) as learners,
    case when c.period_end + interval '30 day' <= a.as_of
         then avg(case when c.left_on is null or c.left_on > c.period_end + interval '30 day' then 1.0 else 0.0 end) end as retained_30d,
    case when c.period_end + interval '60 day' <= a.as_of
         then avg(case when c.left_on is null or c.left_on > c.period_end + interval '60 day' then 1.0 else 0.0 end) end as retained_60d,
    case when c.period_end + interval '90 day' <= a.as_of
         then avg(case when c.left_on is null or c.left_on > c.period_end + interval '90 day' then 1.0 else 0.0 end) end as retained_90d
from cohorts as c
cross join as_of as a
group by c.period_end, c.cohort, a.as_of
order by c.period_end, c.cohort
