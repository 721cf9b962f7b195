-- The course catalogue exported by the LMS.
select
    course_id,
    title,
    mandatory,
    content_type
from {{ source('lms', 'courses') }}
