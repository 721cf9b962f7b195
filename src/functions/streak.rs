//! `tidemark_streak(breach, hold)` and `tidemark_streak_start(breach, hold, key)`: how long an
//! alert rule has held, in one ordered pass per partition.
//!
//! Over the rows of a partition in order: a row in breach adds one to the streak; a row not in
//! breach ends it (0), unless `hold` is true for it (a period whose data gate failed: bad data
//! is not evidence of recovery), which keeps the streak as it was. NULL `breach` counts as not
//! in breach, NULL `hold` as false. `tidemark_streak_start` gives the `period` of the streak's
//! first breach. With a last argument `key`, each run of equal keys starts afresh:
//! `tidemark_streak(b, h, e) over (order by e, p)` is `tidemark_streak(b, h) over (partition by
//! e order by p)` in one pass over all the rows rather than one per partition (see
//! `trailing.rs` for why that matters when partitions are small). Each is what a gaps-and-islands pair of running sums computes, without
//! its two extra sorts.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl};

#[derive(Debug, PartialEq, Eq, Hash)]
struct Streak {
    /// `tidemark_streak_start` (the key of the first row) rather than the length.
    start: bool,
    signature: Signature,
}

pub(super) fn all() -> Vec<WindowUDF> {
    [false, true]
        .into_iter()
        .map(|start| {
            WindowUDF::new_from_impl(Streak {
                start,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

impl Streak {
    fn usage(&self) -> &'static str {
        if self.start {
            "tidemark_streak_start(breach, hold, period[, key])"
        } else {
            "tidemark_streak(breach, hold[, key])"
        }
    }
}

impl WindowUDFImpl for Streak {
    fn name(&self) -> &str {
        if self.start {
            "tidemark_streak_start"
        } else {
            "tidemark_streak"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let expected = if self.start { 3 } else { 2 };
        if !(expected..=expected + 1).contains(&arg_types.len()) {
            return plan_err!(
                "{} takes {expected} or {} arguments, got {}",
                self.usage(),
                expected + 1,
                arg_types.len()
            );
        }
        for (index, name) in [(0, "breach"), (1, "hold")] {
            if !matches!(arg_types[index], DataType::Boolean | DataType::Null) {
                return plan_err!(
                    "{}: {name} must be a condition (boolean), got {}",
                    self.usage(),
                    arg_types[index]
                );
            }
        }
        let mut types = vec![DataType::Boolean, DataType::Boolean];
        // The period (of a start) and the entity key, as they are.
        types.extend(arg_types[2..].iter().cloned());
        Ok(types)
    }

    fn partition_evaluator(&self, args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        let expected = if self.start { 3 } else { 2 };
        Ok(Box::new(StreakEvaluator {
            start: self.start,
            key: (args.input_exprs().len() > expected).then_some(expected),
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let data_type = if self.start {
            field_args
                .get_input_field(2)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null)
        } else {
            DataType::Int64
        };
        Ok(Arc::new(Field::new(field_args.name(), data_type, true)))
    }
}

#[derive(Debug)]
struct StreakEvaluator {
    start: bool,
    /// The argument whose runs of equal values each start a streak afresh, if given.
    key: Option<usize>,
}

impl PartitionEvaluator for StreakEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let breach: &BooleanArray = values[0].as_boolean();
        let hold: &BooleanArray = values[1].as_boolean();
        let is = |array: &BooleanArray, row: usize| array.is_valid(row) && array.value(row);
        let run_starts = super::run_starts(self.key.map(|key| &values[key]), num_rows)?;
        let mut length = 0i64;
        let mut first_row = 0u32;
        if !self.start {
            let mut lengths = Vec::with_capacity(num_rows);
            for (row, &run_start) in run_starts.iter().enumerate() {
                if run_start == row {
                    length = 0;
                }
                if is(breach, row) {
                    length += 1;
                } else if !is(hold, row) {
                    length = 0;
                }
                lengths.push(length);
            }
            return Ok(Arc::new(Int64Array::from(lengths)));
        }
        // The row of each streak's first breach, then its key.
        let mut rows: Vec<Option<u32>> = Vec::with_capacity(num_rows);
        for (row, &run_start) in run_starts.iter().enumerate() {
            if run_start == row {
                length = 0;
            }
            if is(breach, row) {
                if length == 0 {
                    first_row = row as u32;
                }
                length += 1;
            } else if !is(hold, row) {
                length = 0;
            }
            rows.push((length > 0).then_some(first_row));
        }
        if num_rows == 0 {
            return Ok(new_null_array(values[2].data_type(), 0));
        }
        Ok(take(&values[2], &UInt32Array::from(rows), None)?)
    }
}
