//! `tidemark_recent_mean(value, time, last, days)` and `tidemark_change(value, time, days)`:
//! event-level sequence steps of a metric model's daily roll-up, in one pass per partition.
//!
//! Over the rows of a partition in order (`partition by entity order by time, value`):
//!
//! - `tidemark_recent_mean` is the mean of this row's value and the values of up to `last` − 1
//!   rows before it whose `time` is at most `days` days before this row's (the rolling mean of
//!   the last N scores);
//! - `tidemark_change` is this row's value minus the previous row's, when the previous row's
//!   `time` is at most `days` days before this row's; NULL otherwise (a score's drop from the
//!   one before it).
//!
//! Rows whose value is NULL are skipped: they get NULL and are not counted as earlier rows.
//! With a last argument `key`, each run of equal keys starts afresh: `over (order by entity,
//! time, value)` with the entity as the key is the window partitioned by entity, in one pass.
//! Each is what a chain of `lag(time, k)` / `lag(value, k)` comparisons computes; DataFusion
//! evaluates every `lag` separately, row by row over each of many small partitions.

use std::sync::Arc;

use super::window_aggregates::literal;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, TimeUnit, TimestampNanosecondType};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

#[derive(Debug, PartialEq, Eq, Hash)]
struct Sequence {
    /// `tidemark_recent_mean` (else `tidemark_change`).
    mean: bool,
    signature: Signature,
}

pub(super) fn all() -> Vec<WindowUDF> {
    [true, false]
        .into_iter()
        .map(|mean| {
            WindowUDF::new_from_impl(Sequence {
                mean,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

impl Sequence {
    fn usage(&self) -> &'static str {
        if self.mean {
            "tidemark_recent_mean(value, time, last, days[, key])"
        } else {
            "tidemark_change(value, time, days[, key])"
        }
    }

    fn arity(&self) -> usize {
        if self.mean {
            4
        } else {
            3
        }
    }
}

impl WindowUDFImpl for Sequence {
    fn name(&self) -> &str {
        if self.mean {
            "tidemark_recent_mean"
        } else {
            "tidemark_change"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let usage = self.usage();
        let arity = self.arity();
        if !(arity..=arity + 1).contains(&arg_types.len()) {
            return plan_err!(
                "{usage} takes {arity} or {} arguments, got {}",
                arity + 1,
                arg_types.len()
            );
        }
        if !(arg_types[0].is_numeric() || arg_types[0] == DataType::Null) {
            return plan_err!("{usage}: value must be a number, got {}", arg_types[0]);
        }
        if !matches!(
            arg_types[1],
            DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64
        ) {
            return plan_err!(
                "{usage}: time must be a timestamp without time zone or a date, got {}",
                arg_types[1]
            );
        }
        let mut types = vec![DataType::Float64, DataType::Timestamp(TimeUnit::Nanosecond, None)];
        for (index, what) in arg_types.iter().enumerate().take(arity).skip(2) {
            if !what.is_integer() {
                return plan_err!("{usage}: argument {} must be a whole number, got {what}", index + 1);
            }
            types.push(DataType::Int64);
        }
        // The key, as it is.
        types.extend(arg_types.get(arity).cloned());
        Ok(types)
    }

    fn partition_evaluator(&self, args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        let usage = self.usage();
        let exprs = args.input_exprs();
        let arity = self.arity();
        if !(arity..=arity + 1).contains(&exprs.len()) {
            return plan_err!("{usage} takes {arity} or {} arguments, got {}", arity + 1, exprs.len());
        }
        let count = |index: usize, what: &str, least: i64| -> Result<i64> {
            match literal(&exprs[index], what, usage)?.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= least => Ok(n),
                other => plan_err!("{usage}: {what} must be {least} or more, got {other}"),
            }
        };
        let (last, days) = if self.mean {
            (count(2, "last", 1)?, count(3, "days", 0)?)
        } else {
            (2, count(2, "days", 0)?)
        };
        Ok(Box::new(SequenceEvaluator {
            mean: self.mean,
            last: last as usize,
            span: days.saturating_mul(NANOS_PER_DAY),
            key: (exprs.len() > arity).then_some(arity),
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(field_args.name(), DataType::Float64, true)))
    }
}

#[derive(Debug)]
struct SequenceEvaluator {
    mean: bool,
    /// This row and up to `last` − 1 before it.
    last: usize,
    /// How far back (nanoseconds) an earlier row may lie.
    span: i64,
    /// The argument whose runs of equal values each start a sequence afresh, if given.
    key: Option<usize>,
}

impl PartitionEvaluator for SequenceEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let value = values[0].as_primitive::<Float64Type>();
        let time = values[1].as_primitive::<TimestampNanosecondType>();
        // The rows with a value (and a time) so far, latest last.
        let mut seen: Vec<usize> = Vec::with_capacity(num_rows);
        let mut output: Vec<Option<f64>> = Vec::with_capacity(num_rows);
        let run_starts = super::run_starts(self.key.map(|key| &values[key]), num_rows)?;
        for (row, &run_start) in run_starts.iter().enumerate() {
            if run_start == row {
                seen.clear();
            }
            if value.is_null(row) || time.is_null(row) {
                output.push(None);
                continue;
            }
            let earliest = time.value(row).saturating_sub(self.span);
            let earlier = seen
                .iter()
                .rev()
                .take(self.last - 1)
                .take_while(|&&before| time.value(before) >= earliest);
            output.push(if self.mean {
                // Summed in the order the lag chain adds them: this row, then back in time.
                let (mut sum, mut n) = (value.value(row), 1usize);
                for &before in earlier {
                    sum += value.value(before);
                    n += 1;
                }
                Some(sum / n as f64)
            } else {
                earlier.last().map(|&before| value.value(row) - value.value(before))
            });
            seen.push(row);
        }
        Ok(Arc::new(Float64Array::from(output)))
    }
}
