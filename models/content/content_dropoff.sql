-- Completion drop-off points (003_*): per course and module, launches and completions, and the
-- module's rank by completion rate within its course (1: where most learners drop off).
with modules as (
    select
        course_id,
        module_id,
        sum(case when verb = 'launched' then 1 else 0 end) as launches,
        sum(case when verb = 'completed' then 1 else 0 end) as completions
    from {{ ref('stg_events') }}
    group by course_id, module_id
)
select
    course_id,
    module_id,
    launches,
    completions,
    cast(completions as double) / nullif(launches, 0) as completion_rate,
    rank() over (partition by course_id order by cast(completions as double) / nullif(launches, 0)) as dropoff_rank
from modules
where launches > 0
