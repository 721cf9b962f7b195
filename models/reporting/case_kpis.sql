-- The playbook's shared KPIs per team and rule, from the alert cases: red flags open now,
-- how many cases were opened and resolved, the resolution rate, how many escalated, and the
-- share of the cases measured so far that had recovered at 30, 60 and 90 days.
with cases as (
    select cohort as team_id, rule, status, escalated_period, recovered_at_30, recovered_at_60, recovered_at_90
    from {{ ref('learner_engagement_alert_cases') }}
    union all
    select team_id, rule, status, escalated_period, recovered_at_30, recovered_at_60, recovered_at_90
    from {{ ref('team_sustained_drop_alert_cases') }}
)
select
    team_id,
    rule,
    sum(case when status in ('open', 'ongoing', 'reopened') then 1 else 0 end) as red_flags_open,
    count(*) as cases_opened,
    sum(case when status = 'resolved' then 1 else 0 end) as cases_resolved,
    cast(sum(case when status = 'resolved' then 1 else 0 end) as double) / count(*) as resolution_rate,
    sum(case when escalated_period is not null then 1 else 0 end) as cases_escalated,
    avg(case when recovered_at_30 then 1.0 when not recovered_at_30 then 0.0 end) as recovered_share_30d,
    avg(case when recovered_at_60 then 1.0 when not recovered_at_60 then 0.0 end) as recovered_share_60d,
    avg(case when recovered_at_90 then 1.0 when not recovered_at_90 then 0.0 end) as recovered_share_90d
from cases
group by team_id, rule
order by team_id, rule
