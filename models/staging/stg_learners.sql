-- Learners with their team's department and region (the HRIS side of the data).
select
    l.learner_id,
    l.team_id,
    l.role,
    t.department,
    t.region
from {{ ref('synthetic_learners') }} as l
join {{ ref('synthetic_teams') }} as t on t.team_id = l.team_id
