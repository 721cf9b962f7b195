-- The peer benchmark's scorecard as a DuckDB user writes it by hand: a daily roll-up, unioned
-- with the learner × week grid, windows as RANGE frames, the team median, formulas, and two
-- alert rules held for 2 consecutive weeks (gaps and islands). Same definitions as
-- project/models/scorecard.yml. Reads data/events.parquet and data/learners.parquet, writes
-- out/scorecard.parquet and out/alerts.parquet.
create temp table periods as
select cast(range as date) as period_end
from range(date '2026-05-24', date '2026-11-15' + interval 1 day, interval 7 day);

create temp table daily as
select
    learner_id,
    cast(event_at as date) as day,
    count(*) as events,
    count(*) filter (where verb = 'completed') as completions,
    sum(case verb when 'posted' then 2 when 'commented' then 1 when 'reviewed' then 3 else 0 end) as social,
    sum(duration_minutes / 60.0::double) filter (where not mandatory) as hours,
    sum(score) filter (where verb in ('passed', 'failed')) as score_sum,
    count(score) filter (where verb in ('passed', 'failed')) as score_count
from read_parquet('data/events.parquet')
group by all;

create temp table scorecard as
with learners as (
    select learner_id, team_id, role, department from read_parquet('data/learners.parquet')
),
stream as (
    select learner_id, day, events, 1 as active, completions, social, hours, score_sum, score_count, false as is_period
    from daily
    union all
    select learner_id, period_end, 0, 0, 0, 0, 0, 0, 0, true
    from learners cross join periods
),
windows as (
    select learner_id, day, is_period,
        sum(events) over w90 as events_90d, sum(events) over w30 as events_30d, sum(events) over w7 as events_7d,
        sum(active) over w90 as active_days_90d, sum(active) over w30 as active_days_30d, sum(active) over w7 as active_days_7d,
        sum(completions) over w90 as completions_90d, sum(completions) over w30 as completions_30d, sum(completions) over w7 as completions_7d,
        sum(social) over w90 as social_score_90d, sum(social) over w30 as social_score_30d, sum(social) over w7 as social_score_7d,
        coalesce(sum(hours) over w90, 0) as voluntary_hours_90d, coalesce(sum(hours) over w30, 0) as voluntary_hours_30d, coalesce(sum(hours) over w7, 0) as voluntary_hours_7d,
        sum(score_sum) over w90 / nullif(sum(score_count) over w90, 0) as avg_score_90d,
        sum(score_sum) over w30 / nullif(sum(score_count) over w30, 0) as avg_score_30d,
        sum(score_sum) over w7 / nullif(sum(score_count) over w7, 0) as avg_score_7d
    from stream
    window
        w90 as (partition by learner_id order by day range between 89 preceding and current row),
        w30 as (partition by learner_id order by day range between 29 preceding and current row),
        w7 as (partition by learner_id order by day range between 6 preceding and current row)
),
measured as (
    select l.learner_id, l.team_id, l.role, l.department, w.day as period_end,
        w.* exclude (learner_id, day, is_period),
        count(*) over (partition by l.team_id, w.day) as cohort_size
    from windows as w
    join learners as l using (learner_id)
    where w.is_period
)
select *,
    case when cohort_size >= 5 then median(cast(events_30d as double)) over (partition by team_id, period_end) end as activity_vs_team_reference,
    cast(events_30d as double) / nullif(activity_vs_team_reference, 0) as activity_vs_team,
    voluntary_hours_30d / nullif(cast(active_days_30d as double), 0) as hours_per_active_day,
    cast(completions_30d as double) / nullif(events_30d, 0) as completion_share
from measured;

create temp table alerts as
with judged as (
    select learner_id, team_id, period_end, activity_vs_team, activity_vs_team_reference, events_30d, events_90d,
        coalesce(events_90d >= 20 and activity_vs_team < 0.5, false) as low_activity,
        coalesce(active_days_7d = 0 and events_90d >= 30, false) as inactive_week
    from scorecard
),
rules as (
    select learner_id, team_id, period_end, 'low_activity' as rule, low_activity as breach,
        case when activity_vs_team < 0.25 then 'high' else 'medium' end as severity,
        'Manager' as owner, cast(events_30d as double) as value, 0.5 * activity_vs_team_reference as threshold
    from judged
    union all
    select learner_id, team_id, period_end, 'inactive_week', inactive_week,
        'medium', 'HRBP', cast(events_90d as double), cast(null as double)
    from judged
),
islands as (
    select *,
        sum(case when breach then 0 else 1 end) over (partition by learner_id, rule order by period_end rows unbounded preceding) as island
    from rules
),
streaks as (
    select *,
        sum(case when breach then 1 else 0 end) over (partition by learner_id, rule, island order by period_end rows unbounded preceding) as consecutive_periods,
        min(case when breach then period_end end) over (partition by learner_id, rule, island) as first_period_in_breach
    from islands
)
select learner_id, team_id as cohort, period_end, rule, severity, 'fired' as status, value, threshold,
    consecutive_periods, first_period_in_breach, owner
from streaks
where breach and consecutive_periods >= 2;

copy scorecard to 'out/scorecard.parquet' (format parquet);
copy alerts to 'out/alerts.parquet' (format parquet);
