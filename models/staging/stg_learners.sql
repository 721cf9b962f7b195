-- Learners with their team attributes.
select
    l.learner_id,
    l.role,
    l.hired_on,
    t.team_id,
    t.team_name,
    t.department,
    t.region
from {{ ref('learners') }} as l
join {{ ref('teams') }} as t on l.team_id = t.team_id
