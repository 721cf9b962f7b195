//! Statistical process control in one ordered pass: `tidemark_ewma(value, lambda[, key])` and
//! `tidemark_cusum_low(z, k[, key])`.
//!
//! Over the rows of a partition in order:
//! - `tidemark_ewma` is the exponentially weighted moving average `e = λ·x + (1 − λ)·e'` of the
//!   values so far, starting at the first value;
//! - `tidemark_cusum_low` is the lower one-sided CUSUM of standardised values,
//!   `s = max(0, s' − z − k)`, starting at 0: it grows while values stay more than `k` below
//!   the target and falls back when they recover.
//!
//! A NULL value leaves the statistic as it was (and the row gets it). With a last argument
//! `key`, each run of equal keys starts afresh (as for `tidemark_streak`, see `streak.rs`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Chart {
    Ewma,
    CusumLow,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Spc {
    chart: Chart,
    signature: Signature,
}

pub(super) fn all() -> Vec<WindowUDF> {
    [Chart::Ewma, Chart::CusumLow]
        .into_iter()
        .map(|chart| {
            WindowUDF::new_from_impl(Spc {
                chart,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

impl Spc {
    fn usage(&self) -> &'static str {
        match self.chart {
            Chart::Ewma => "tidemark_ewma(value, lambda[, key])",
            Chart::CusumLow => "tidemark_cusum_low(z, k[, key])",
        }
    }
}

impl WindowUDFImpl for Spc {
    fn name(&self) -> &str {
        match self.chart {
            Chart::Ewma => "tidemark_ewma",
            Chart::CusumLow => "tidemark_cusum_low",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!("{} takes 2 or 3 arguments, got {}", self.usage(), arg_types.len());
        }
        for (index, data_type) in arg_types[..2].iter().enumerate() {
            if !data_type.is_numeric() && *data_type != DataType::Null {
                return plan_err!(
                    "{}: argument {} must be a number, got {data_type}",
                    self.usage(),
                    index + 1
                );
            }
        }
        let mut types = vec![DataType::Float64, DataType::Float64];
        types.extend(arg_types[2..].iter().cloned());
        Ok(types)
    }

    fn partition_evaluator(&self, args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(SpcEvaluator {
            chart: self.chart,
            key: (args.input_exprs().len() > 2).then_some(2),
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(field_args.name(), DataType::Float64, true)))
    }
}

#[derive(Debug)]
struct SpcEvaluator {
    chart: Chart,
    key: Option<usize>,
}

impl PartitionEvaluator for SpcEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let value = values[0].as_primitive::<Float64Type>();
        let parameter = values[1].as_primitive::<Float64Type>();
        let run_starts = super::run_starts(self.key.map(|key| &values[key]), num_rows)?;
        let mut state: Option<f64> = None;
        let mut out = Vec::with_capacity(num_rows);
        for (row, &run_start) in run_starts.iter().enumerate() {
            if run_start == row {
                state = match self.chart {
                    Chart::Ewma => None,
                    Chart::CusumLow => Some(0.0),
                };
            }
            let x = value.is_valid(row).then(|| value.value(row));
            let p = parameter.is_valid(row).then(|| parameter.value(row));
            if let (Some(x), Some(p)) = (x, p) {
                state = Some(match (self.chart, state) {
                    (Chart::Ewma, None) => x,
                    (Chart::Ewma, Some(previous)) => p * x + (1.0 - p) * previous,
                    (Chart::CusumLow, previous) => (previous.unwrap_or(0.0) - x - p).max(0.0),
                });
            }
            out.push(state);
        }
        Ok(Arc::new(Float64Array::from(out)))
    }

    fn evaluate(&mut self, _values: &[ArrayRef], _range: &std::ops::Range<usize>) -> Result<ScalarValue> {
        plan_err!("tidemark's control-chart functions evaluate whole partitions")
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    async fn column(sql: &str) -> Vec<Option<f64>> {
        let ctx = SessionContext::new();
        crate::functions::register(&ctx);
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches
            .iter()
            .flat_map(|batch| {
                let array = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Float64Array>()
                    .unwrap();
                (0..array.len())
                    .map(|i| (!array.is_null(i)).then(|| array.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    use datafusion::arrow::array::Array;

    #[tokio::test]
    async fn ewma_and_lower_cusum_follow_their_recursions_per_key() {
        let rows =
            "(values ('a', 1, 10.0), ('a', 2, 0.0), ('a', 3, cast(null as double)), ('a', 4, 5.0), ('b', 1, 4.0))";
        let ewma = column(&format!(
            "select tidemark_ewma(x, 0.5, e) over (order by e, p) from {rows} as t(e, p, x) order by e, p"
        ))
        .await;
        // a: 10, 0.5·0 + 0.5·10 = 5, held at 5, 0.5·5 + 0.5·5 = 5; b starts afresh at 4.
        assert_eq!(ewma, [Some(10.0), Some(5.0), Some(5.0), Some(5.0), Some(4.0)]);
        let cusum = column(&format!(
            "select tidemark_cusum_low(-x / 5.0, 0.5, e) over (order by e, p) from {rows} as t(e, p, x) order by e, p"
        ))
        .await;
        // z = -2, 0, NULL, -1, -0.8: s = max(0, s' - z - 0.5) = 1.5, 1.0, 1.0, 1.5; b: 0.3.
        let rounded: Vec<Option<f64>> = cusum.iter().map(|v| v.map(|v| (v * 1000.0).round() / 1000.0)).collect();
        assert_eq!(rounded, [Some(1.5), Some(1.0), Some(1.0), Some(1.5), Some(0.3)]);
    }
}
