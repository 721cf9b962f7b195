//! Each function against the plain SQL it stands for, on generated rows split over several
//! partitions and small batches (so partial states are merged).

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::prelude::{SessionConfig, SessionContext};

fn context() -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(4).with_batch_size(500);
    let context = SessionContext::new_with_config(config);
    super::register(&context);
    context
}

/// A context whose aggregations stop aggregating partially after 100 rows and pass every row
/// on as its own partial state (`convert_to_state`), as DataFusion does when groups are many.
fn context_skipping_partial_aggregation() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(4).with_batch_size(500);
    let options = config.options_mut();
    options.execution.skip_partial_aggregation_probe_rows_threshold = 100;
    options.execution.skip_partial_aggregation_probe_ratio_threshold = 0.0;
    let context = SessionContext::new_with_config(config);
    super::register(&context);
    context
}

/// A deterministic pseudo-random number in [0, 1).
fn uniform(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// `events(entity, day, value, tag)`: 40 entities, days 0..200 (some entities quiet for long
/// stretches), values with NULLs and repeats, tags with repeats.
async fn events(context: &SessionContext) {
    let mut rows = Vec::new();
    for i in 0..6_000u64 {
        let entity = (uniform(i * 7 + 1) * 40.0) as i64;
        let mut day = (uniform(i * 7 + 2) * 200.0) as i64;
        if entity % 5 == 0 {
            day /= 3;
        }
        let value = if uniform(i * 7 + 3) < 0.1 {
            "null".to_string()
        } else {
            format!("{:.1}", (uniform(i * 7 + 4) * 20.0).floor() / 2.0 - 3.0)
        };
        let tag = format!("'t{}'", (uniform(i * 7 + 5) * 12.0) as i64);
        rows.push(format!("({entity}, {day}, cast({value} as double), {tag})"));
    }
    context
        .sql(&format!(
            "create table events(entity bigint, day bigint, value double, tag varchar) as values {}",
            rows.join(", ")
        ))
        .await
        .expect("create events")
        .collect()
        .await
        .expect("events");
}

const CALENDAR: &str = "date '1970-01-20', date '1970-07-15', 'week'";
const PERIODS: &str = "tidemark_periods(date '1970-01-20', date '1970-07-15', 'week')";

/// Rows of `sql` as text, sorted, numbers to 9 decimals.
async fn rows(context: &SessionContext, sql: &str) -> Vec<String> {
    let batches = context
        .sql(sql)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{sql}"))
        .collect()
        .await
        .unwrap_or_else(|error| panic!("{error}\n{sql}"));
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|column| {
                    if column.is_null(row) {
                        "NULL".to_string()
                    } else if let Some(values) = column.as_primitive_opt::<Float64Type>() {
                        format!("{:.9}", values.value(row))
                    } else if let Some(values) = column.as_primitive_opt::<Int64Type>() {
                        values.value(row).to_string()
                    } else {
                        datafusion::arrow::util::display::array_value_to_string(column, row).expect("display")
                    }
                })
                .collect();
            out.push(cells.join(" | "));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn window_aggregates_equal_their_sql_over_the_window() {
    window_aggregates_against_sql(context()).await;
}

#[tokio::test]
async fn window_aggregates_equal_their_sql_when_rows_skip_partial_aggregation() {
    window_aggregates_against_sql(context_skipping_partial_aggregation()).await;
}

async fn window_aggregates_against_sql(context: SessionContext) {
    events(&context).await;
    let windows = [1, 7, 30, 90];
    let lengths = "1, 7, 30, 90";
    let aggregated = format!(
        "select entity,
            tidemark_window_sum(value, day, {CALENDAR}, {lengths}) as s,
            tidemark_window_min(value, day, {CALENDAR}, {lengths}) as lo,
            tidemark_window_max(value, day, {CALENDAR}, {lengths}) as hi,
            tidemark_window_last(value, day, {CALENDAR}, {lengths}) as l,
            tidemark_window_count_distinct(tag, day, {CALENDAR}, {lengths}) as d,
            tidemark_window_percentile(value, day, 0.5, {CALENDAR}, {lengths}) as m,
            tidemark_window_percentile(value, day, 0.3, {CALENDAR}, {lengths}) as q
        from events group by entity"
    );
    for (index, days) in windows.into_iter().enumerate() {
        let k = index + 1;
        let ours = format!(
            "select entity, unnest({PERIODS}) as period,
                unnest(s[{k}]) as s, unnest(lo[{k}]) as lo, unnest(hi[{k}]) as hi, unnest(l[{k}]) as l,
                unnest(d[{k}]) as d, unnest(m[{k}]) as m, unnest(q[{k}]) as q
             from ({aggregated})"
        );
        // The same numbers by joining every event to the periods whose window holds its day.
        let plain = format!(
            "with periods as (select cast(unnest({PERIODS}) as bigint) as p),
             grid as (select distinct entity, p from events cross join periods),
             joined as (
                select g.entity, g.p, e.day, e.value, e.tag
                from grid g left join events e on e.entity = g.entity and e.day > g.p - {days} and e.day <= g.p
             ),
             latest as (
                select entity, p, max(day) as day from joined where value is not null group by entity, p
             )
             select j.entity, cast(cast(j.p as int) as date) as period,
                coalesce(sum(j.value), 0) as s, min(j.value) as lo, max(j.value) as hi,
                max(case when j.day = latest.day then j.value end) as l,
                count(distinct j.tag) as d,
                percentile_cont(j.value, 0.5) as m, percentile_cont(j.value, 0.3) as q
             from joined j left join latest on latest.entity = j.entity and latest.p = j.p
             group by j.entity, j.p"
        );
        let (ours, plain) = (rows(&context, &ours).await, rows(&context, &plain).await);
        assert_eq!(ours.len(), 40 * 26, "{days}-day windows: one row per entity and period");
        assert_eq!(ours, plain, "{days}-day windows");
    }
}

#[tokio::test]
async fn window_aggregates_take_dates_and_reject_what_they_cannot_compute() {
    let context = context();
    events(&context).await;
    let by_date = rows(
        &context,
        &format!(
            "select entity, unnest(tidemark_window_sum(value, cast(cast(day as int) as date), {CALENDAR}, 30)[1]) from events group by entity"
        ),
    )
    .await;
    let by_number = rows(
        &context,
        &format!(
            "select entity, unnest(tidemark_window_sum(value, day, {CALENDAR}, 30)[1]) from events group by entity"
        ),
    )
    .await;
    assert_eq!(by_date, by_number);
    // Without GROUP BY: one list for the whole table.
    let whole = rows(
        &context,
        &format!("select unnest(tidemark_window_sum(value, day, {CALENDAR}, 7)[1]) from events"),
    )
    .await;
    assert_eq!(whole.len(), 26);
    for (sql, message) in [
        (
            format!("select tidemark_window_sum(value, day, {CALENDAR}, entity) from events"),
            "days must be a constant",
        ),
        (
            format!("select tidemark_window_sum(value, day, {CALENDAR}, 30, 0) from events"),
            "days must be a positive whole number",
        ),
        (
            "select tidemark_window_sum(value, day, date '1970-02-01', date '1970-01-01', 'week', 7) from events"
                .to_string(),
            "end 1970-01-01 is before start 1970-02-01",
        ),
        (
            format!("select tidemark_window_sum(tag, day, {CALENDAR}, 7) from events"),
            "value must be a number",
        ),
        (
            format!("select tidemark_window_sum(value, day, {CALENDAR}) from events"),
            "takes at least 6 arguments",
        ),
        (
            format!("select tidemark_window_percentile(value, day, 2, {CALENDAR}, 7) from events"),
            "fraction must be between 0 and 1",
        ),
        (
            "select tidemark_window_sum(value, day, date '1970-01-01', date '1970-02-01', 'fortnight', 7) from events"
                .to_string(),
            "every must be 'day', 'week' or 'month'",
        ),
        (
            "select tidemark_periods(date '1970-02-01', date '1970-03-01', 'fortnight')".to_string(),
            "every must be 'day', 'week' or 'month'",
        ),
    ] {
        let result = match context.sql(&sql).await {
            Ok(frame) => frame.collect().await.map(|_| ()),
            Err(error) => Err(error),
        };
        let error = result.expect_err(&sql).to_string();
        assert!(error.contains(message), "{sql}: {error}");
    }
}

#[tokio::test]
async fn periods_follow_the_calendar() {
    let context = context();
    let months = rows(
        &context,
        "select unnest(tidemark_periods(date '2026-01-31', date '2026-05-31', 'month'))",
    )
    .await;
    assert_eq!(
        months,
        ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]
    );
    let days = rows(
        &context,
        "select unnest(tidemark_periods(date '2026-03-01', date '2026-03-01', 'day'))",
    )
    .await;
    assert_eq!(days, ["2026-03-01"]);
}

#[tokio::test]
async fn streaks_equal_gaps_and_islands() {
    let context = context();
    let mut rows_sql = Vec::new();
    for i in 0..3_000u64 {
        let entity = i % 30;
        let period = i / 30;
        let breach = match (uniform(i * 3 + 1) * 10.0) as u64 {
            0 => "null".to_string(),
            n => (n < 6).to_string(),
        };
        let hold = match (uniform(i * 3 + 2) * 10.0) as u64 {
            0 => "null".to_string(),
            n => (n < 2).to_string(),
        };
        rows_sql.push(format!("({entity}, {period}, {breach}, {hold})"));
    }
    context
        .sql(&format!(
            "create table judged(entity bigint, period bigint, breach boolean, hold boolean) as values {}",
            rows_sql.join(", ")
        ))
        .await
        .expect("create")
        .collect()
        .await
        .expect("judged");
    let ours = rows(
        &context,
        "select entity, period,
            tidemark_streak(breach, hold) over (partition by entity order by period) as streak,
            tidemark_streak_start(breach, hold, period) over (partition by entity order by period) as first,
            tidemark_streak(breach, hold, entity) over (order by entity, period) as keyed_streak,
            tidemark_streak_start(breach, hold, period, entity) over (order by entity, period) as keyed_first
         from judged",
    )
    .await;
    let plain = rows(
        &context,
        "with flagged as (
            select *, case when coalesce(breach, false) then 1 else 0 end as b from judged
         ),
         islands as (
            select *, sum(case when b = 1 or coalesce(hold, false) then 0 else 1 end)
                over (partition by entity order by period rows between unbounded preceding and current row) as island
            from flagged
         ),
         counted as (
            select *, sum(b) over (partition by entity, island order by period rows between unbounded preceding and current row) as streak
            from islands
         )
         select entity, period, streak, first, streak as keyed_streak, first as keyed_first
         from (
            select entity, period, streak,
                case when streak > 0 then min(case when b = 1 then period end) over (partition by entity, island) end as first
            from counted
         ) as plain",
    )
    .await;
    assert_eq!(ours, plain);
}

#[tokio::test]
async fn trailing_statistics_equal_sliding_window_frames() {
    let context = context();
    let mut rows_sql = Vec::new();
    // 30 entities with 1 to 40 periods each (some shorter than any frame), NULLs and repeats.
    for entity in 0..30u64 {
        let periods = 1 + (uniform(entity * 11 + 5) * 40.0) as u64;
        for period in 0..periods {
            let draw = uniform(entity * 1_000 + period);
            let value = if draw < 0.15 {
                "null".to_string()
            } else {
                format!("{:.1}", (draw * 20.0).floor() / 2.0)
            };
            rows_sql.push(format!("({entity}, {period}, {value})"));
        }
    }
    context
        .sql(&format!(
            "create table history(entity bigint, period bigint, x double) as values {}",
            rows_sql.join(", ")
        ))
        .await
        .expect("create")
        .collect()
        .await
        .expect("history");
    for (start, end) in [(10, 3), (8, 1), (4, 0), (2, 2), (0, 0), (60, 5)] {
        let ours = rows(
            &context,
            &format!(
                "select entity, period, a, s, c, m, q,
                    summary['avg'] as sa, summary['stddev'] as ss, summary['count'] as sc,
                    summary['median'] as sm, summary['p25'] as sq, summary['p75'] as sp,
                    keyed = summary as same
                 from (select entity, period,
                    tidemark_trailing_avg(x, {start}, {end}) over w as a,
                    tidemark_trailing_stddev(x, {start}, {end}) over w as s,
                    tidemark_trailing_count(x, {start}, {end}) over w as c,
                    tidemark_trailing_percentile(x, 0.5, {start}, {end}) over w as m,
                    tidemark_trailing_percentile(x, 0.25, {start}, {end}) over w as q,
                    tidemark_trailing_summary(x, {start}, {end}) over w as summary,
                    tidemark_trailing_summary(x, {start}, {end}, entity) over (order by entity, period) as keyed
                 from history window w as (partition by entity order by period))"
            ),
        )
        .await;
        let frame =
            format!("over (partition by entity order by period rows between {start} preceding and {end} preceding)");
        let plain = rows(
            &context,
            &format!(
                "select entity, period,
                    avg(x) {frame} as a,
                    stddev_samp(x) {frame} as s,
                    count(x) {frame} as c,
                    median(x) {frame} as m,
                    percentile_cont(x, 0.25) {frame} as q,
                    avg(x) {frame} as sa,
                    stddev_samp(x) {frame} as ss,
                    count(x) {frame} as sc,
                    median(x) {frame} as sm,
                    percentile_cont(x, 0.25) {frame} as sq,
                    percentile_cont(x, 0.75) {frame} as sp,
                    true as same
                 from history"
            ),
        )
        .await;
        assert_eq!(ours, plain, "rows between {start} preceding and {end} preceding");
    }
    // Frames must be constants, in order.
    let error = context
        .sql("select tidemark_trailing_avg(x, 1, 3) over (partition by entity order by period) from history")
        .await
        .expect("plan")
        .collect()
        .await
        .expect_err("end after start");
    assert!(
        error.to_string().contains("end (3) must not be after start (1)"),
        "{error}"
    );
}

#[tokio::test]
async fn sequence_steps_equal_their_lag_chains() {
    let context = context();
    let mut rows_sql = Vec::new();
    // 25 entities, events at irregular times (gaps longer than the span, several a day, equal
    // times) with scores that repeat.
    for i in 0..2_500u64 {
        let entity = i % 25;
        let minutes = (uniform(i * 5 + 1) * 60.0 * 24.0 * 120.0) as i64;
        let score = (uniform(i * 5 + 2) * 10.0).floor() * 10.0;
        rows_sql.push(format!(
            "({entity}, timestamp '2026-01-01 00:00:00' + interval '{minutes} minutes', {score})"
        ));
    }
    context
        .sql(&format!(
            "create table scores(entity bigint, at timestamp, score double) as values {}",
            rows_sql.join(", ")
        ))
        .await
        .expect("create")
        .collect()
        .await
        .expect("scores");
    let w = "partition by entity order by at, score";
    let ours = rows(
        &context,
        &format!(
            "select entity, at, score,
                tidemark_recent_mean(score, at, 4, 9) over ({w}) as m,
                tidemark_change(score, at, 9) over ({w}) as d,
                tidemark_recent_mean(score, at, 4, 9, entity) over (order by entity, at, score) as keyed_m,
                tidemark_change(score, at, 9, entity) over (order by entity, at, score) as keyed_d
             from scores"
        ),
    )
    .await;
    let within = |k: usize| format!("lag(at, {k}) over ({w}) >= at - interval '9 days'");
    let numerator: Vec<String> = (1..4)
        .map(|k| {
            format!(
                "coalesce(case when {} then lag(score, {k}) over ({w}) end, 0)",
                within(k)
            )
        })
        .collect();
    let denominator: Vec<String> = (1..4)
        .map(|k| format!("case when {} then 1 else 0 end", within(k)))
        .collect();
    let plain = rows(
        &context,
        &format!(
            "select entity, at, score, m, d, m as keyed_m, d as keyed_d
             from (select entity, at, score,
                (score + {}) / (1 + {}) as m,
                case when {} then score - lag(score) over ({w}) end as d
             from scores) as plain",
            numerator.join(" + "),
            denominator.join(" + "),
            within(1)
        ),
    )
    .await;
    assert_eq!(ours, plain);
}

#[test]
fn a_time_range_calendar_starts_at_the_first_period_it_recomputes_on_the_same_grid() {
    use super::{first_period_from, period_ends, Cadence};
    let date = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date");
    let (first, last) = (date("2026-06-28"), date("2026-11-15"));
    // (cadence, range start, first period end of the run's calendar)
    let cases = [
        // No range, or a range from before the calendar: the whole calendar.
        (Cadence::Week, None, first),
        (Cadence::Week, Some("2026-01-01"), first),
        // A range from a period end, and from the day after one.
        (Cadence::Week, Some("2026-11-08"), date("2026-11-08")),
        (Cadence::Week, Some("2026-11-09"), last),
        // After the last period: the last one (the run writes no period).
        (Cadence::Week, Some("2027-01-01"), last),
        // Days; months keep their anchor.
        (Cadence::Day, Some("2026-07-04"), date("2026-07-04")),
        (Cadence::Month, Some("2026-09-02"), first),
    ];
    for (cadence, start, expected) in cases {
        assert_eq!(
            first_period_from(first, last, cadence, start.map(date)),
            expected,
            "{start:?}"
        );
    }
    // Every later period end is one of the whole calendar's.
    let all = period_ends(first, last, Cadence::Week).expect("periods");
    let from = first_period_from(first, last, Cadence::Week, Some(date("2026-09-02")));
    let later = period_ends(from, last, Cadence::Week).expect("periods");
    assert_eq!(later[..], all[all.len() - later.len()..]);
    assert_eq!(later.len(), 11);
}
