-- How well the alerts find what the synthetic data planted: per evaluated learner rule (add a
-- rule to `learner_rules` to evaluate it) and for the team sustained-drop rule, precision and
-- recall against the planted truth, the false-alarm rate on noise-only learners, the median
-- days from a planted drop to its first alert, and fired alerts in the reporting-lag gap (which
-- must be none).
with learner_truth as (
    select
        learner_id,
        planted_shape <> 'healthy' as planted,
        planted_shape,
        cast(cast(date '{{ var('lms_start') }}' as int) + change_day as date) as change_date
    from {{ ref('synthetic_learners') }}
),
learner_rules as (
    select * from (values ('disengagement_risk'), ('activity_cusum')) as r(rule)
),
learner_first_alerts as (
    -- Each learner's first fired alert of each rule, and its first one on or after the drop.
    select a.learner_id, a.rule, min(a.period_end) as first_alert,
        min(case when a.period_end >= t.change_date then a.period_end end) as first_after_change
    from {{ ref('learner_engagement_alerts') }} as a
    join learner_truth as t on t.learner_id = a.learner_id
    where a.status = 'fired'
    group by a.learner_id, a.rule
),
learners as (
    select r.rule, t.learner_id, t.planted, t.planted_shape, a.learner_id is not null as alerted,
        cast(a.first_after_change as int) - cast(t.change_date as int) as days_to_alert
    from learner_rules as r
    cross join learner_truth as t
    left join learner_first_alerts as a on a.learner_id = t.learner_id and a.rule = r.rule
),
team_truth as (
    select team_id, planted_team_drop as planted,
        cast(cast(date '{{ var('lms_start') }}' as int) + team_change_day as date) as change_date
    from {{ ref('synthetic_teams') }}
),
team_alerted as (
    select a.team_id, min(case when a.period_end >= t.change_date then a.period_end end) as first_after_change
    from {{ ref('team_sustained_drop_alerts') }} as a
    join team_truth as t on t.team_id = a.team_id
    where a.rule = 'sustained_team_drop' and a.status = 'fired'
    group by a.team_id
),
teams as (
    select t.team_id, t.planted, a.team_id is not null as alerted,
        cast(a.first_after_change as int) - cast(t.change_date as int) as days_to_alert
    from team_truth as t
    left join team_alerted as a on a.team_id = t.team_id
),
gap as (
    -- Period ends whose 7-day window contains the reporting-lag days.
    select rule, count(*) as fired_in_gap
    from {{ ref('learner_engagement_alerts') }}
    where status = 'fired'
      and period_end between cast(cast(date '{{ var('lms_start') }}' as int) + {{ var('lms_gap_day') }} as date)
                         and cast(cast(date '{{ var('lms_start') }}' as int) + {{ var('lms_gap_day') }} + 9 as date)
    group by rule
)
select
    'learner ' || l.rule as alert,
    sum(case when planted and alerted then 1 else 0 end) as true_positives,
    sum(case when not planted and alerted then 1 else 0 end) as false_positives,
    sum(case when planted and not alerted then 1 else 0 end) as missed,
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when alerted then 1 else 0 end), 0), 3) as alert_precision,
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when planted then 1 else 0 end), 0), 3) as alert_recall,
    round(cast(sum(case when planted_shape = 'healthy' and alerted then 1 else 0 end) as double) / nullif(sum(case when planted_shape = 'healthy' then 1 else 0 end), 0), 4) as noise_false_alarm_rate,
    median(case when planted then days_to_alert end) as median_days_to_alert,
    coalesce(max(g.fired_in_gap), 0) as fired_in_reporting_gap
from learners as l
left join gap as g on g.rule = l.rule
group by l.rule
union all
select
    'team sustained_team_drop' as alert,
    sum(case when planted and alerted then 1 else 0 end),
    sum(case when not planted and alerted then 1 else 0 end),
    sum(case when planted and not alerted then 1 else 0 end),
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when alerted then 1 else 0 end), 0), 3),
    round(cast(sum(case when planted and alerted then 1 else 0 end) as double) / nullif(sum(case when planted then 1 else 0 end), 0), 3),
    cast(null as double),
    median(case when planted then days_to_alert end),
    cast(null as bigint)
from teams
order by alert
