-- Learners with their team's department and region (the HRIS side of the data).
select
    l.learner_id,
    l.team_id,
    l.role,
    t.department,
    t.region,
    -- The HRIS's leaving date, once it has happened (as of the last day of the history).
    case when l.left_day < {{ var('lms_days') }}
         then cast(cast(date '{{ var('lms_start') }}' as int) + l.left_day as date) end as left_on
from {{ ref('synthetic_learners') }} as l
join {{ ref('synthetic_teams') }} as t on t.team_id = l.team_id
