select learner_id, verb, course_id, event_at, duration_minutes, score, mandatory
from {{ source('lms', 'events') }}
