-- How well the alerts find what the synthetic data planted: precision and recall of the learner
-- disengagement alert and the team sustained-drop alert, the false-alarm rate on noise-only
-- learners, and fired alerts in the reporting-lag gap (which must be none).
with learner_truth as (
    select learner_id, planted_shape <> 'healthy' as planted, planted_shape
    from {{ ref('synthetic_learners') }}
),
learner_alerted as (
    select distinct learner_id
    from {{ ref('learner_engagement_alerts') }}
    where rule = 'disengagement_risk' and status = 'fired'
),
learners as (
    select t.learner_id, t.planted, t.planted_shape, a.learner_id is not null as alerted
    from learner_truth as t
    left join learner_alerted as a on a.learner_id = t.learner_id
),
team_truth as (
    select team_id, planted_team_drop as planted from {{ ref('synthetic_teams') }}
),
team_alerted as (
    select distinct team_id
    from {{ ref('team_sustained_drop_alerts') }}
    where rule = 'sustained_team_drop' and status = 'fired'
),
teams as (
    select t.team_id, t.planted, a.team_id is not null as alerted
    from team_truth as t
    left join team_alerted as a on a.team_id = t.team_id
),
gap as (
    -- Period ends whose 7-day window contains the reporting-lag days.
    select count(*) as fired_in_gap
    from {{ ref('learner_engagement_alerts') }}
    where status = 'fired' and rule = 'disengagement_risk'
      and period_end between cast(cast(date '{{ var('lms_start') }}' as int) + {{ var('lms_gap_day') }} as date)
                         and cast(cast(date '{{ var('lms_start') }}' as int) + {{ var('lms_gap_day') }} + 9 as date)
)
select
    'learner disengagement_risk' as alert,
    sum(case when planted and alerted then 1 else 0 end) as true_positives,
    sum(case when not planted and alerted then 1 else 0 end) as false_positives,
    sum(case when planted and not alerted then 1 else 0 end) as missed,
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when alerted then 1 else 0 end), 0), 3) as alert_precision,
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when planted then 1 else 0 end), 0), 3) as alert_recall,
    round(cast(sum(case when planted_shape = 'healthy' and alerted then 1 else 0 end) as double) / nullif(sum(case when planted_shape = 'healthy' then 1 else 0 end), 0), 4) as noise_false_alarm_rate,
    (select fired_in_gap from gap) as fired_in_reporting_gap
from learners
union all
select
    'team sustained_team_drop' as alert,
    sum(case when planted and alerted then 1 else 0 end),
    sum(case when not planted and alerted then 1 else 0 end),
    sum(case when planted and not alerted then 1 else 0 end),
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when alerted then 1 else 0 end), 0), 3),
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when planted then 1 else 0 end), 0), 3),
    cast(null as double),
    cast(null as bigint)
from teams
order by alert
