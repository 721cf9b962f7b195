-- The lagging outcome the engagement score is validated against: each module a learner
-- completed (`verb = 'completed'`), with when.
select learner_id, event_at as completed_at
from {{ ref('stg_events') }}
where verb = 'completed'
