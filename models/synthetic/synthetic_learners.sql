-- Synthetic learners: team, role, activity level, skill, the planted disengagement (ground
-- truth for learner alerts): shape and the day it starts, and the planted attrition: half of the
-- disengaged learners leave 5 to 10 weeks after their change day (no one else leaves).
with numbers as (
    select unnest(range(0, {{ var('lms_learners') }})) as learner_number
),
profiles as (
    select
        learner_number,
        learner_number % {{ team_count() }} as team_number,
        {{ hash01('learner_number', 1) }} as u_disengage,
        {{ hash01('learner_number', 2) }} as u_shape,
        {{ hash01('learner_number', 3) }} as u_change,
        {{ hash01('learner_number', 4) }} as u_rate,
        {{ hash01('learner_number', 5) }} as u_skill,
        {{ hash01('learner_number', 6) }} as u_role,
        {{ hash01('learner_number', 7) }} as u_leave,
        {{ hash01('learner_number', 8) }} as u_leave_day
    from numbers
),
learners as (
select
    {{ padded_id('L', 'learner_number', var('lms_learners'), 6) }} as learner_id,
    learner_number,
    {{ padded_id('T', 'team_number', team_count(), 4) }} as team_id,
    team_number,
    case when u_role < 0.5 then 'individual contributor' when u_role < 0.8 then 'specialist' else 'manager' end as role,
    2.5 + 2.5 * u_rate as daily_rate,
    62 + 30 * u_skill as skill,
    case
        when u_disengage >= {{ var('lms_disengaged_share') }} then 'healthy'
        when u_shape < 0.2 then 'sudden'
        when u_shape < 0.4 then 'gradual'
        when u_shape < 0.6 then 'social_withdrawal'
        when u_shape < 0.8 then 'score_erosion'
        else 'skipping_mandatory'
    end as planted_shape,
    {{ var('lms_drop_window_start') }} + cast(floor(u_change * 28) as bigint) as change_day,
    u_leave,
    u_leave_day
from profiles
)
select
    learner_id, learner_number, team_id, team_number, role, daily_rate, skill, planted_shape, change_day,
    case when planted_shape <> 'healthy' and u_leave < {{ var('lms_attrition_share') }}
         then change_day + 35 + cast(floor(u_leave_day * 36) as bigint) end as left_day
from learners
