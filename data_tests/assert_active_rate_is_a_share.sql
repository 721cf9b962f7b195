-- A team's active rate is a share of its learners: between 0 and 1.
select team_id, period_end, active_rate_7d, active_rate_30d
from {{ ref('team_engagement') }}
where active_rate_7d < 0 or active_rate_7d > 1 or active_rate_30d < 0 or active_rate_30d > 1
