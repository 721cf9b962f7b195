-- Cohort heatmap for BI: one row per team and week, with the active rate and its change.
select
    t.team_id,
    t.department,
    t.region,
    t.period_end as week_ending,
    t.team_size,
    t.active_rate_7d,
    t.events_7d,
    t.activity_change,
    t.pass_rate_30d_shrunk,
    t.gate_ok
from {{ ref('team_engagement') }} as t
