-- Every alert routed to someone says why, with the numbers that fired it.
select learner_id, period_end, rule
from {{ ref('learner_engagement_alerts') }}
where reason is null or reason = '' or owner is null
