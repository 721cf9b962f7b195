-- Red flags by rule, severity and owner: fired alerts and the entities they concern, plus
-- suppressed ones (held back by a data gate), over the whole history and in the latest week.
with alerts as (
    select 'learner' as level, rule, severity, owner, status, period_end, learner_id as entity_id
    from {{ ref('learner_engagement_alerts') }}
    union all
    select 'team' as level, rule, severity, owner, status, period_end, team_id as entity_id
    from {{ ref('team_engagement_alerts') }}
    union all
    select 'team' as level, rule, severity, owner, status, period_end, team_id as entity_id
    from {{ ref('team_sustained_drop_alerts') }}
),
latest as (
    select max(period_end) as latest_period from alerts
)
select
    a.level,
    a.rule,
    a.severity,
    a.owner,
    sum(case when a.status = 'fired' then 1 else 0 end) as fired_alerts,
    count(distinct case when a.status = 'fired' then a.entity_id end) as entities_flagged,
    sum(case when a.status = 'suppressed' then 1 else 0 end) as suppressed_alerts,
    sum(case when a.status = 'fired' and a.period_end = l.latest_period then 1 else 0 end) as fired_latest_week
from alerts as a
cross join latest as l
group by a.level, a.rule, a.severity, a.owner
order by a.level, a.rule, a.severity, a.owner
