select learner_id, team_id, role, department
from {{ source('lms', 'learners') }}
