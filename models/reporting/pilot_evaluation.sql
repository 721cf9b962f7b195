-- The benefits pilot (learner_engagement.yml, interventions) against the effect the generator
-- planted: per treated learner and week after the start, the sessions on the benefits course
-- that only the nudge caused (synthetic_events.planted_nudge). The estimate's interval should
-- hold it.
with pilot as (
    select * from {{ ref('learner_engagement_interventions') }}
    where intervention = 'benefits_nudge'
),
weeks as (
    -- The weeks the estimate read after the start (the same for every learner here).
    select period_end
    from (
        select period_end, row_number() over (order by period_end) as week
        from (select distinct period_end from {{ ref('learner_engagement', event_time=false) }}) as periods
        where period_end >= (select start_date from pilot)
    ) as numbered
    where week <= (select post_periods_observed from pilot)
),
planted as (
    select count(*) as sessions
    from {{ ref('synthetic_events') }}
    where planted_nudge
      and event_date > (select min(period_end) from weeks) - interval '7 day'
      and event_date <= (select max(period_end) from weeks)
)
select
    p.intervention,
    p.status,
    p.treated,
    p.control,
    p.post_periods_observed,
    planted.sessions / (cast(p.treated as double) * p.post_periods_observed) as planted_effect,
    p.estimate,
    p.ci_low,
    p.ci_high,
    planted.sessions / (cast(p.treated as double) * p.post_periods_observed) between p.ci_low and p.ci_high as covered,
    p.roi_pct,
    p.roi_pct_low,
    p.roi_pct_high
from pilot as p
cross join planted
