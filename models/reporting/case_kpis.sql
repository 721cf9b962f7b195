-- The playbook's shared KPIs per team and rule, from the alert cases: red flags open now,
-- how many cases were opened and resolved, the resolution rate, how many escalated, the median
-- hours from the opening period's end to triage and to a plan (with an action log: `actions:`
-- on the metric model), and the share of the cases measured so far that had recovered at 30,
-- 60 and 90 days.
with cases as (
    select cohort as team_id, rule, status, escalated_period, opened_period, triaged_at, planned_at,
        recovered_at_30, recovered_at_60, recovered_at_90
    from {{ ref('learner_engagement_alert_cases') }}
    union all
    select team_id, rule, status, escalated_period, opened_period, triaged_at, planned_at,
        recovered_at_30, recovered_at_60, recovered_at_90
    from {{ ref('team_sustained_drop_alert_cases') }}
),
timed as (
    select *,
        (to_unixtime(triaged_at) - to_unixtime(cast(opened_period as timestamp))) / 3600.0 as hours_to_triage,
        (to_unixtime(planned_at) - to_unixtime(cast(opened_period as timestamp))) / 3600.0 as hours_to_plan
    from cases
)
select
    team_id,
    rule,
    sum(case when status in ('open', 'ongoing', 'reopened') then 1 else 0 end) as red_flags_open,
    count(*) as cases_opened,
    sum(case when status = 'resolved' then 1 else 0 end) as cases_resolved,
    cast(sum(case when status = 'resolved' then 1 else 0 end) as double) / count(*) as resolution_rate,
    sum(case when escalated_period is not null then 1 else 0 end) as cases_escalated,
    median(hours_to_triage) as median_hours_to_triage,
    median(hours_to_plan) as median_hours_to_plan,
    avg(case when recovered_at_30 then 1.0 when not recovered_at_30 then 0.0 end) as recovered_share_30d,
    avg(case when recovered_at_60 then 1.0 when not recovered_at_60 then 0.0 end) as recovered_share_60d,
    avg(case when recovered_at_90 then 1.0 when not recovered_at_90 then 0.0 end) as recovered_share_90d
from timed
group by team_id, rule
order by team_id, rule
