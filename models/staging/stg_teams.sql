-- Teams with their size.
select
    t.team_id,
    t.department,
    t.region,
    count(l.learner_id) as team_size
from {{ ref('synthetic_teams') }} as t
left join {{ ref('synthetic_learners') }} as l on l.team_id = t.team_id
group by t.team_id, t.department, t.region
