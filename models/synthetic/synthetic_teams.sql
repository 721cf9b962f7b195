-- Synthetic teams, with the planted sustained team drops (ground truth for team alerts).
with numbers as (
    select unnest(range(0, {{ team_count() }})) as team_number
)
select
    {{ padded_id('T', 'team_number', team_count(), 4) }} as team_id,
    team_number,
    case cast(team_number % 6 as int)
        when 0 then 'Engineering' when 1 then 'Sales' when 2 then 'Operations'
        when 3 then 'Customer Success' when 4 then 'Finance' else 'People'
    end as department,
    case cast(team_number % 4 as int) when 0 then 'EMEA' when 1 then 'AMER' when 2 then 'APAC' else 'LATAM' end as region,
    {{ hash01('team_number', 11) }} < {{ var('lms_team_drop_share') }} as planted_team_drop,
    {{ var('lms_drop_window_start') }} + cast(floor({{ hash01('team_number', 12) }} * 28) as bigint) as team_change_day
from numbers
