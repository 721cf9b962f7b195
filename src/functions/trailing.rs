//! `tidemark_trailing_avg / _stddev / _count(value, start, end[, key])`,
//! `tidemark_trailing_percentile(value, fraction, start, end[, key])` and
//! `tidemark_trailing_summary(value, start, end[, key])`: statistics of the rows `start` to
//! `end` rows before each row, computed a whole partition at a time.
//!
//! `tidemark_trailing_avg(x, 10, 3) over (partition by e order by p)` is what
//! `avg(x) over (partition by e order by p rows between 10 preceding and 3 preceding)` gives,
//! and likewise `stddev_samp`, `count` and `percentile_cont` (`fraction` 0.5 is `median`): NULL
//! values are skipped, an empty frame gives NULL (0 for the count), a frame with one value a
//! NULL standard deviation. `tidemark_trailing_summary` gives them all at once, as a struct
//! `{avg, stddev, count, median, p25, p75}` (read with `summary['avg']`).
//!
//! With a last argument `key`, only the rows of the same run of equal keys count:
//! `tidemark_trailing_avg(x, 10, 3, e) over (order by e, p)` is the window partitioned by `e`,
//! computed in one pass over all the rows.
//!
//! Why: DataFusion evaluates a sliding frame row by row, updating and retracting an accumulator
//! with one-row slices, and for every partition it slices the input, evaluates the arguments and
//! concatenates the results. When partitions are an entity's few weekly periods, that overhead
//! is nearly all of the cost (about 0.5 µs per row and statistic for the frames, a few µs per
//! partition and function for the rest); one pass over the rows with a key costs nanoseconds per
//! row. Metric models' baselines and control charts use these.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl};

use super::window_aggregates::{literal, percentile_cont};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Statistic {
    Avg,
    Stddev,
    Count,
    Percentile,
    Summary,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Trailing {
    statistic: Statistic,
    signature: Signature,
}

pub(super) fn all() -> Vec<WindowUDF> {
    [
        Statistic::Avg,
        Statistic::Stddev,
        Statistic::Count,
        Statistic::Percentile,
        Statistic::Summary,
    ]
    .into_iter()
    .map(|statistic| {
        WindowUDF::new_from_impl(Trailing {
            statistic,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    })
    .collect()
}

impl Trailing {
    fn usage(&self) -> String {
        let fraction = if self.statistic == Statistic::Percentile {
            ", fraction"
        } else {
            ""
        };
        format!("{}(value{fraction}, start, end[, key])", self.name())
    }

    /// Arguments before `start`.
    fn leading(&self) -> usize {
        if self.statistic == Statistic::Percentile {
            2
        } else {
            1
        }
    }
}

impl WindowUDFImpl for Trailing {
    fn name(&self) -> &str {
        match self.statistic {
            Statistic::Avg => "tidemark_trailing_avg",
            Statistic::Stddev => "tidemark_trailing_stddev",
            Statistic::Count => "tidemark_trailing_count",
            Statistic::Percentile => "tidemark_trailing_percentile",
            Statistic::Summary => "tidemark_trailing_summary",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let usage = self.usage();
        let leading = self.leading();
        if !(leading + 2..=leading + 3).contains(&arg_types.len()) {
            return plan_err!(
                "{usage} takes {} or {} arguments, got {}",
                leading + 2,
                leading + 3,
                arg_types.len()
            );
        }
        let numeric = |t: &DataType| t.is_numeric() || *t == DataType::Null;
        if !numeric(&arg_types[0]) {
            return plan_err!("{usage}: value must be a number, got {}", arg_types[0]);
        }
        let mut types = vec![DataType::Float64];
        if leading == 2 {
            if !numeric(&arg_types[1]) {
                return plan_err!("{usage}: fraction must be a number, got {}", arg_types[1]);
            }
            types.push(DataType::Float64);
        }
        for (index, what) in [(leading, "start"), (leading + 1, "end")] {
            if !arg_types[index].is_integer() {
                return plan_err!(
                    "{usage}: {what} must be a whole number of rows, got {}",
                    arg_types[index]
                );
            }
            types.push(DataType::Int64);
        }
        // The key, as it is.
        types.extend(arg_types.get(leading + 2).cloned());
        Ok(types)
    }

    fn partition_evaluator(&self, args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        let usage = self.usage();
        let leading = self.leading();
        let exprs = args.input_exprs();
        if !(leading + 2..=leading + 3).contains(&exprs.len()) {
            return plan_err!(
                "{usage} takes {} or {} arguments, got {}",
                leading + 2,
                leading + 3,
                exprs.len()
            );
        }
        let constant =
            |index: usize, what: &str| -> Result<ScalarValue> { literal(&exprs[index], what, &usage).cloned() };
        let rows = |index: usize, what: &str| -> Result<usize> {
            match constant(index, what)?.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= 0 => Ok(n as usize),
                other => plan_err!("{usage}: {what} must be 0 or more rows, got {other}"),
            }
        };
        let (start, end) = (rows(leading, "start")?, rows(leading + 1, "end")?);
        if end > start {
            return plan_err!(
                "{usage}: end ({end}) must not be after start ({start}): the frame is start to end rows before the row"
            );
        }
        let fraction = if self.statistic == Statistic::Percentile {
            match constant(1, "fraction")?.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(f)) if (0.0..=1.0).contains(&f) => f,
                other => return plan_err!("{usage}: fraction must be between 0 and 1, got {other}"),
            }
        } else {
            0.0
        };
        Ok(Box::new(TrailingEvaluator {
            statistic: self.statistic,
            start,
            end,
            fraction,
            key: (exprs.len() == leading + 3).then_some(leading + 2),
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let data_type = match self.statistic {
            Statistic::Count => DataType::Int64,
            Statistic::Summary => DataType::Struct(summary_fields()),
            _ => DataType::Float64,
        };
        // A count is never NULL, nor is a summary (its fields may be).
        let nullable = !matches!(self.statistic, Statistic::Count | Statistic::Summary);
        Ok(Arc::new(Field::new(field_args.name(), data_type, nullable)))
    }
}

#[derive(Debug)]
struct TrailingEvaluator {
    statistic: Statistic,
    start: usize,
    end: usize,
    fraction: f64,
    /// The argument whose runs of equal values bound the frames, if given.
    key: Option<usize>,
}

impl PartitionEvaluator for TrailingEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let input = values[0].as_primitive::<Float64Type>();
        let run_starts = super::run_starts(self.key.map(|key| &values[key]), num_rows)?;
        let mut frame: Vec<f64> = Vec::with_capacity(self.start - self.end + 1);
        let mut counts = Vec::new();
        let mut statistics: Vec<Option<f64>> = Vec::new();
        // The summary's other columns: stddev, median, p25, p75.
        let mut more: [Vec<Option<f64>>; 4] = Default::default();
        for (row, &run_start) in run_starts.iter().enumerate() {
            frame.clear();
            // Rows row − start ..= row − end, those of the row's run.
            if row >= run_start + self.end {
                for earlier in row.saturating_sub(self.start).max(run_start)..=row - self.end {
                    if input.is_valid(earlier) {
                        frame.push(input.value(earlier));
                    }
                }
            }
            match self.statistic {
                Statistic::Count => counts.push(frame.len() as i64),
                Statistic::Avg => statistics.push(mean(&frame)),
                Statistic::Stddev => statistics.push(sample_stddev(&frame)),
                Statistic::Percentile => statistics.push(if self.fraction == 0.5 {
                    median(&mut frame)
                } else {
                    percentile_cont(&mut frame, self.fraction)
                }),
                Statistic::Summary => {
                    counts.push(frame.len() as i64);
                    statistics.push(mean(&frame));
                    more[0].push(sample_stddev(&frame));
                    more[1].push(median(&mut frame));
                    more[2].push(percentile_cont(&mut frame, 0.25));
                    more[3].push(percentile_cont(&mut frame, 0.75));
                }
            }
        }
        Ok(match self.statistic {
            Statistic::Count => Arc::new(Int64Array::from(counts)),
            Statistic::Summary => {
                let [stddev, median, p25, p75] = more;
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Float64Array::from(statistics)),
                    Arc::new(Float64Array::from(stddev)),
                    Arc::new(Int64Array::from(counts)),
                    Arc::new(Float64Array::from(median)),
                    Arc::new(Float64Array::from(p25)),
                    Arc::new(Float64Array::from(p75)),
                ];
                Arc::new(StructArray::try_new(summary_fields(), columns, None)?)
            }
            _ => Arc::new(Float64Array::from(statistics)),
        })
    }
}

/// The columns of `tidemark_trailing_summary`.
fn summary_fields() -> Fields {
    Fields::from(vec![
        Field::new("avg", DataType::Float64, true),
        Field::new("stddev", DataType::Float64, true),
        Field::new("count", DataType::Int64, false),
        Field::new("median", DataType::Float64, true),
        Field::new("p25", DataType::Float64, true),
        Field::new("p75", DataType::Float64, true),
    ])
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `stddev_samp`: two passes (the mean, then the squared deviations from it).
fn sample_stddev(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let centre = mean(values)?;
    let squares: f64 = values.iter().map(|v| (v - centre) * (v - centre)).sum();
    Some((squares / (values.len() - 1) as f64).sqrt())
}

/// `median`: the middle value, or the mean of the two middle values.
fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_small_frames() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(sample_stddev(&[4.0]), None);
        assert_eq!(sample_stddev(&[1.0, 3.0]), Some(2f64.sqrt()));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut []), None);
    }
}
