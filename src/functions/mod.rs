//! SQL functions tidemark adds to DataFusion, so that the SQL metric models compile to stays
//! fast and readable.
//!
//! Every session tidemark opens has them: embedded runs, unit tests, and on a Ballista cluster
//! the client, `tidemark scheduler` and `tidemark executor` (a stock Ballista scheduler or
//! executor does not know them). Plans carry them by name.
//!
//! | function | kind | what it returns |
//! |---|---|---|
//! | `tidemark_periods(start, end, every)` | scalar | the period ends from `start` to `end` every `'day'`, `'week'` or `'month'`, as a list of dates |
//! | `tidemark_window_sum(value, day, start, end, every, days, …)` | aggregate | per window length `days` (one or more), per period end `p` of `tidemark_periods(start, end, every)`, the sum of `value` over the rows with `day` in (`p` − `days`, `p`]; 0 when there is none |
//! | `tidemark_window_min` / `_max` (same arguments) | aggregate | the least / greatest `value` in each window; NULL when there is none |
//! | `tidemark_window_last` (same arguments) | aggregate | the `value` of the latest `day` in each window that has one |
//! | `tidemark_window_count_distinct` (same arguments) | aggregate | the number of distinct non-NULL `value`s in each window |
//! | `tidemark_window_percentile(value, day, fraction, start, end, every, days, …)` | aggregate | `percentile_cont(value, fraction)` of each window |
//! | `tidemark_streak(breach, hold[, key]) over (partition by … order by …)` | window | consecutive rows in breach up to this one; a row that is not in breach resets it to 0 unless `hold` is true (it then keeps the count) |
//! | `tidemark_streak_start(breach, hold, period[, key]) over (…)` | window | `period` of the first row of the current streak; NULL when the streak is 0 |
//! | `tidemark_trailing_avg(value, start, end[, key]) over (partition by … order by …)` | window | `avg(value)` over the rows `start` to `end` rows before this one: what `rows between start preceding and end preceding` gives, computed a partition at a time |
//! | `tidemark_trailing_stddev` / `_count` (same arguments), `tidemark_trailing_percentile(value, fraction, start, end[, key])` | window | `stddev_samp`, `count`, `percentile_cont` (0.5: `median`) over the same rows |
//! | `tidemark_trailing_summary(value, start, end[, key])` | window | all of them at once: a struct `{avg, stddev, count, median, p25, p75}` |
//! | `tidemark_ewma(value, lambda[, key]) over (…)` | window | the exponentially weighted moving average `λ·value + (1 − λ)·previous`, from the first value (NULL values hold it) |
//! | `tidemark_cusum_low(z, k[, key]) over (…)` | window | the lower one-sided CUSUM `max(0, previous − z − k)`, from 0 (NULL values hold it) |
//!
//! The streak and trailing functions take an optional last argument `key`: rows count only
//! within a run of equal keys, so `f(…, entity) over (order by entity, period)` equals
//! `f(…) over (partition by entity order by period)`, computed in one pass instead of once per
//! partition (much faster when partitions are an entity's few periods).
//!
//! | function | kind | what it returns |
//! |---|---|---|
//! | `tidemark_recent_mean(value, time, last, days) over (partition by … order by time, …)` | window | the mean of this row's `value` and those of up to `last` − 1 rows before it whose `time` is at most `days` days earlier (rows with a NULL value are skipped) |
//! | `tidemark_change(value, time, days) over (…)` | window | `value` minus the previous row's when that row's `time` is at most `days` days earlier; else NULL |
//!
//! A window aggregate returns, per group, a list per window length (in the order given: `[1]`
//! is the first) of a list with one value per period end, so a metric model computes every
//! window of every entity in one hash aggregation of its daily roll-up and `unnest`s the lists
//! next to `unnest(tidemark_periods(start, end, every))` into entity × period rows: no join of
//! days to periods, no sort. Each value is the number `sum(value) over (partition by entity
//! order by day range between days − 1 preceding and current row)` gives at that period end.

pub mod duckdb;
mod periods;
mod sequence;
mod spc;
mod streak;
mod trailing;
mod window_aggregates;

#[cfg(test)]
mod tests;

use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::SessionContext;

pub use periods::{first_period_from, period_ends, Cadence, PeriodsError};

/// For every row, the first row of its run of equal `key` values (0 for every row without a
/// key): the window functions' optional `key` argument bounds their frames and sequences with it.
pub(crate) fn run_starts(
    key: Option<&datafusion::arrow::array::ArrayRef>,
    num_rows: usize,
) -> datafusion::error::Result<Vec<usize>> {
    let mut starts = vec![0usize; num_rows];
    if let Some(key) = key {
        for range in datafusion::arrow::compute::partition(&[std::sync::Arc::clone(key)])?.ranges() {
            starts[range.clone()].fill(range.start);
        }
    }
    Ok(starts)
}

/// The scalar functions (`tidemark_periods`, and DuckDB's names: [`duckdb`]).
pub fn scalar_functions() -> Vec<ScalarUDF> {
    let mut functions = vec![periods::periods_udf()];
    functions.extend(duckdb::scalar_functions());
    functions
}

/// The window aggregates (`tidemark_window_*`), and DuckDB's `arg_max` / `arg_min`.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    let mut functions = window_aggregates::all();
    functions.extend(duckdb::aggregate_functions());
    functions
}

/// The window functions (`tidemark_streak`, `tidemark_streak_start`, `tidemark_trailing_*`,
/// `tidemark_recent_mean`, `tidemark_change`, `tidemark_ewma`, `tidemark_cusum_low`).
pub fn window_functions() -> Vec<WindowUDF> {
    let mut functions = streak::all();
    functions.extend(spc::all());
    functions.extend(trailing::all());
    functions.extend(sequence::all());
    functions
}

/// Registers every tidemark function with a session, and DuckDB's `//` operator.
pub fn register(context: &SessionContext) {
    use datafusion::execution::FunctionRegistry as _;
    // Only fails when the registry refuses planners, which a session state never does.
    let _ = context
        .state_ref()
        .write()
        .register_expr_planner(std::sync::Arc::new(duckdb::DuckOperators));
    for function in scalar_functions() {
        context.register_udf(function);
    }
    for function in aggregate_functions() {
        context.register_udaf(function);
    }
    for function in window_functions() {
        context.register_udwf(function);
    }
}

/// Registers every tidemark function in a registry (a `SessionState` being built for a
/// Ballista scheduler or executor).
pub fn register_in(registry: &mut dyn FunctionRegistry) -> datafusion::error::Result<()> {
    for function in scalar_functions() {
        registry.register_udf(std::sync::Arc::new(function))?;
    }
    for function in aggregate_functions() {
        registry.register_udaf(std::sync::Arc::new(function))?;
    }
    for function in window_functions() {
        registry.register_udwf(std::sync::Arc::new(function))?;
    }
    Ok(())
}
