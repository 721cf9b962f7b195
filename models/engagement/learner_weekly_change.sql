-- Each learner's weekly activity change against their own baseline, for team-level breadth.
-- Weeks whose data gate failed are left out.
select
    learner_id,
    team_id,
    cast(period_end as timestamp) as period_end,
    activity_14d_vs_own as activity_change
from {{ ref('learner_engagement') }}
where gate_ok and activity_14d_vs_own is not null
