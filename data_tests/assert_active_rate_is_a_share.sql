-- A team's active rate is a share of its learners: between 0 and 1.
select *
from {{ ref('team_weekly_engagement') }}
where active_rate < 0 or active_rate > 1
