//! `tidemark init`: a new project that builds at once. It has a source over a small generated
//! Parquet file of learning events, a staging model, a learners model and a metric model. The
//! metric model has windows, comparisons, a weighted score and an alert with a threshold. There
//! are also profiles with the embedded default (and an S3 target commented out), a `.gitignore`
//! and a CI workflow example.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::diagnostics::Diagnostic;

/// The project name `init` gives a folder: its name in lower case, with anything but letters,
/// digits and `_` made `_` (and `p_` in front of a leading digit).
pub fn project_name(folder: &Path) -> String {
    let base = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf())
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if name.is_empty() {
        name = "my_project".into();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name = format!("p_{name}");
    }
    name
}

/// The files of a new project called `name`, by path: text files, and the events as Parquet.
fn files(name: &str) -> Result<Vec<(&'static str, Vec<u8>)>, Diagnostic> {
    let text = |body: &str| body.replace("{name}", name).into_bytes();
    Ok(vec![
        ("tidemark.yml", text(PROJECT_FILE)),
        ("profiles.yml", text(PROFILES)),
        ("models/sources.yml", text(SOURCES)),
        ("models/stg_events.sql", text(STG_EVENTS)),
        ("models/learners.sql", text(LEARNERS)),
        ("models/engagement.yml", text(METRIC_MODEL)),
        ("models/latest_week.sql", text(LATEST_WEEK)),
        ("data/events.parquet", events_parquet()?),
        (".gitignore", text(GITIGNORE)),
        (".github/workflows/tidemark.yml", text(WORKFLOW)),
    ])
}

/// Writes a new project into `folder` (created when missing). Existing files are never
/// overwritten unless `force`: then nothing is written and the error names them.
pub fn scaffold(folder: &Path, force: bool) -> Result<(String, Vec<String>), Diagnostic> {
    let name = project_name(folder);
    let files = files(&name)?;
    let existing: Vec<&str> = files
        .iter()
        .map(|(path, _)| *path)
        .filter(|path| folder.join(path).exists())
        .collect();
    if !existing.is_empty() && !force {
        return Err(Diagnostic::new(format!(
            "{} already holds {}: nothing was written",
            folder.display(),
            existing.join(", ")
        ))
        .with_help("init a new folder (`tidemark init demo`), or pass --force to overwrite these files"));
    }
    let mut written = Vec::new();
    for (path, contents) in files {
        let target: PathBuf = folder.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| Diagnostic::new(format!("cannot create {}: {error}", parent.display())))?;
        }
        std::fs::write(&target, contents)
            .map_err(|error| Diagnostic::new(format!("cannot write {}: {error}", target.display())))?;
        written.push(path.to_string());
    }
    Ok((name, written))
}

/// Twelve weeks of learning events (2026-09-07 to 2026-11-29) of 12 learners in 3 teams.
/// Learners l03 and l08 go quiet for the last three weeks: the alert's sustained drop.
fn events_parquet() -> Result<Vec<u8>, Diagnostic> {
    let first_day = chrono::NaiveDate::from_ymd_opt(2026, 9, 7).expect("a date");
    let (mut learners, mut teams, mut times, mut verbs, mut minutes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for learner in 1..=12u32 {
        for day in 0..84u32 {
            let quiet = (learner == 3 || learner == 8) && day >= 63;
            // A weekday rhythm with some variation; fewer events at weekends.
            let weekend = day % 7 >= 5;
            // Each learner skips some weekdays on a rhythm of their own.
            let skips = (learner * 3 + day) % (4 + learner % 3) == 0;
            let count = if quiet {
                u32::from(day % 9 == 0)
            } else if weekend {
                (learner + day) % 2
            } else if skips {
                0
            } else {
                1 + (learner * 7 + day * 13) % 4
            };
            for event in 0..count {
                let date = first_day + chrono::Days::new(u64::from(day));
                let at = date
                    .and_hms_opt(8 + (learner + event * 3) % 10, (day * 7 + event * 11) % 60, 0)
                    .expect("a time");
                learners.push(format!("l{learner:02}"));
                teams.push(format!("t{}", (learner - 1) % 3 + 1));
                times.push(at.and_utc().timestamp_micros());
                verbs.push(if (learner + day + event) % 5 == 0 {
                    "completed"
                } else {
                    "viewed"
                });
                minutes.push(i64::from(3 + (learner * 5 + day * 3 + event) % 27));
            }
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("learner_id", DataType::Utf8, false),
        Field::new("team_id", DataType::Utf8, false),
        Field::new("event_at", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("verb", DataType::Utf8, false),
        Field::new("minutes", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(learners)),
        Arc::new(StringArray::from(teams)),
        Arc::new(TimestampMicrosecondArray::from(times)),
        Arc::new(StringArray::from(verbs)),
        Arc::new(Int64Array::from(minutes)),
    ];
    let problem = |error: String| Diagnostic::new(format!("cannot write the sample events: {error}"));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| problem(e.to_string()))?;
    let mut bytes = Vec::new();
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None)
        .map_err(|e| problem(e.to_string()))?;
    writer.write(&batch).map_err(|e| problem(e.to_string()))?;
    writer.close().map_err(|e| problem(e.to_string()))?;
    Ok(bytes)
}

const PROJECT_FILE: &str = "# A tidemark project (README: Configuration reference).
name: {name}
profile: {name}

# `tidemark build` previews the latest week's scorecard when it succeeds.
show: latest_week

models:
  {name}:
    +materialized: view
";

const PROFILES: &str = "# Where and how the project runs (README: profiles.yml).
{name}:
  target: dev
  outputs:
    dev:
      type: datafusion          # DataFusion embedded in tidemark
      warehouse: warehouse      # Parquet tables under ./warehouse/<schema>/<table>/
      schema: main
    # A warehouse on S3 (or any S3-compatible store): `tidemark build --target s3`.
    # s3:
    #   type: datafusion
    #   warehouse: s3://my-bucket/{name}
    #   storage:
    #     region: eu-west-1
    #     access_key_id: \"{{ env_var('AWS_ACCESS_KEY_ID', '') }}\"
    #     secret_access_key: \"{{ env_var('AWS_SECRET_ACCESS_KEY', '') }}\"
";

const SOURCES: &str = "version: 2

sources:
  - name: lms
    description: Learning events exported by the learning platform.
    tables:
      - name: events
        description: One row per learning event (sample data written by tidemark init).
        external_location: data/events.parquet
";

const STG_EVENTS: &str = "-- One row per learning event, from the platform's export.
select
    learner_id,
    team_id,
    event_at,
    verb,
    minutes
from {{ source('lms', 'events') }}
";

const LEARNERS: &str = "{{ config(materialized='table') }}
-- One row per learner and the team they are in.
select learner_id, max(team_id) as team_id
from {{ ref('stg_events') }}
group by learner_id
";

const METRIC_MODEL: &str = "version: 2

metric_models:
  # One row per learner and week: rolling activity, how it compares with the learner's own
  # past and with the team, a weighted engagement score, and an alert on a sustained drop.
  - name: learner_engagement
    description: Weekly engagement of each learner.
    events: {model: stg_events, entity: learner_id, time: event_at}
    dimension: {model: learners, key: learner_id, attributes: [team_id]}
    cohort: team_id
    min_cohort_size: 3
    # Weeks ending on these Sundays; a 7-day window holds the week that ends on the date.
    periods: {every: week, start: \"2026-10-04\", end: \"2026-11-29\"}
    windows: [28, 7]
    measures:
      - {name: events, agg: count}
      - {name: minutes, agg: sum, expr: minutes}
      - {name: active_days, agg: active_days}
    comparisons:
      - {name: vs_own, metric: active_days_7d, against: baseline, periods: 4, min_periods: 2}
      - {name: vs_team, metric: active_days_7d, against: cohort_median, as: difference}
    scores:
      - name: engagement
        components:
          - {metric: active_days_7d, weight: 0.5}
          - {metric: events_7d, weight: 0.3}
          - {metric: minutes_7d, weight: 0.2}
    alerts:
      - name: sustained_drop
        when: \"active_days_7d <= 1\"
        for: 2
        severity:
          - {level: high, when: \"active_days_28d <= 8\"}
          - {level: medium}
        owner: HR business partner
        value: active_days_7d
        threshold: \"1\"
        reason: \"active on {active_days_7d} day(s) a week for {consecutive_periods} weeks\"
";

const LATEST_WEEK: &str = "-- The latest week of the scorecard, lowest engagement first, with that week's alerts.
with latest as (
    select max(period_end) as period_end from {{ ref('learner_engagement') }}
)
select
    s.learner_id,
    s.team_id,
    s.period_end,
    s.active_days_7d,
    s.events_7d,
    s.minutes_7d,
    round(s.engagement, 2) as engagement,
    s.vs_team as active_days_vs_team,
    a.rule as alert,
    a.severity,
    a.reason
from {{ ref('learner_engagement') }} as s
join latest on s.period_end = latest.period_end
left join {{ ref('learner_engagement_alerts') }} as a
    on a.learner_id = s.learner_id and a.period_end = s.period_end
order by engagement, learner_id
";

const GITIGNORE: &str = "target/
warehouse/
dbt_packages/
";

const WORKFLOW: &str = "# Builds the project on every push and every night, and keeps the artifacts.
name: tidemark
on:
  push:
  schedule:
    - cron: \"0 5 * * *\"
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: \"3.12\"
      - run: pip install tidemark
      - run: tidemark build --junit target/junit.xml
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: tidemark-artifacts
          path: |
            target/manifest.json
            target/run_results.json
            target/junit.xml
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_name_becomes_a_project_name() {
        assert_eq!(project_name(Path::new("/tmp/My Demo-2")), "my_demo_2");
        assert_eq!(project_name(Path::new("/tmp/2026")), "p_2026");
    }

    #[test]
    fn the_sample_events_are_parquet_with_a_quiet_spell() {
        let bytes = events_parquet().expect("events");
        assert_eq!(&bytes[..4], b"PAR1");
        assert!(bytes.len() > 1000);
    }
}
