//! The period calendar: `period_ends` (used by metric-model validation) and the SQL function
//! `tidemark_periods(start, end, every)` that gives the same dates to compiled SQL.

use std::sync::Arc;

use chrono::{Months, NaiveDate};
use datafusion::arrow::array::{Array, ArrayRef, Date32Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// How often a period ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    Day,
    Week,
    /// The same day of each month as the start (clamped to the month's last day).
    Month,
}

impl Cadence {
    pub fn parse(text: &str) -> Option<Cadence> {
        match text {
            "day" => Some(Cadence::Day),
            "week" => Some(Cadence::Week),
            "month" => Some(Cadence::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::Day => "day",
            Cadence::Week => "week",
            Cadence::Month => "month",
        }
    }
}

/// Most periods one calendar may have.
const MAX_PERIODS: usize = 100_000;

/// Days since 1970-01-01.
pub(super) fn day_number(date: NaiveDate) -> i64 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
}

/// Why a calendar cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodsError {
    #[error("periods: end {end} is before start {start}")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error("periods: date out of range")]
    OutOfRange,
    #[error("periods: more than 100,000 periods")]
    TooMany,
}

/// The period ends from `start` to `end` (both included when on the cadence), as day numbers.
pub fn period_ends(start: NaiveDate, end: NaiveDate, every: Cadence) -> Result<Vec<i64>, PeriodsError> {
    if end < start {
        return Err(PeriodsError::EndBeforeStart { start, end });
    }
    let mut ends = Vec::new();
    let mut current = start;
    let mut step = 0u32;
    while current <= end {
        ends.push(day_number(current));
        step += 1;
        current = match every {
            Cadence::Day => start + chrono::Days::new(u64::from(step)),
            Cadence::Week => start + chrono::Days::new(7 * u64::from(step)),
            Cadence::Month => start
                .checked_add_months(Months::new(step))
                .ok_or(PeriodsError::OutOfRange)?,
        };
        if ends.len() > MAX_PERIODS {
            return Err(PeriodsError::TooMany);
        }
    }
    Ok(ends)
}

/// The first period end of the calendar (`first` to `last` every `every`) that a run
/// recomputing from `start` needs: the first period end on or after `start` (the last period
/// end when none is), so the calendar can begin there and keep its grid. Monthly calendars keep
/// `first`: their grid is anchored to its day of the month.
pub fn first_period_from(first: NaiveDate, last: NaiveDate, every: Cadence, start: Option<NaiveDate>) -> NaiveDate {
    let step = match every {
        Cadence::Day => 1,
        Cadence::Week => 7,
        Cadence::Month => return first,
    };
    let Some(start) = start.filter(|start| *start > first && last >= first) else {
        return first;
    };
    let periods_before = |date: NaiveDate| (date - first).num_days().div_euclid(step);
    let last_end = first + chrono::Duration::days(periods_before(last) * step);
    let after = (start - first).num_days();
    let from = first + chrono::Duration::days((after + step - 1) / step * step);
    from.min(last_end)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Periods {
    signature: Signature,
}

pub(super) fn periods_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(Periods {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Date32, true)))
}

fn date_of(value: &ScalarValue, name: &str) -> Result<Option<NaiveDate>> {
    match value {
        ScalarValue::Date32(None) => Ok(None),
        ScalarValue::Date32(Some(days)) => Ok(NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(i64::from(*days))))),
        other => exec_err!("tidemark_periods: {name} must be a date, got {other}"),
    }
}

impl ScalarUDFImpl for Periods {
    fn name(&self) -> &str {
        "tidemark_periods"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_type())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!(
                "tidemark_periods(start, end, every) takes 3 arguments, got {}",
                arg_types.len()
            );
        }
        Ok(vec![DataType::Date32, DataType::Date32, DataType::Utf8])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar_only = args.args.iter().all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let rows = if scalar_only { 1 } else { args.number_rows };
        let scalar = |index: usize| -> Result<Vec<ScalarValue>> {
            match &args.args[index] {
                ColumnarValue::Scalar(value) => Ok(vec![value.clone(); rows]),
                ColumnarValue::Array(array) => (0..array.len())
                    .map(|row| ScalarValue::try_from_array(array, row))
                    .collect(),
            }
        };
        let (starts, ends, everys) = (scalar(0)?, scalar(1)?, scalar(2)?);
        let mut offsets = vec![0i32];
        let mut days: Vec<Option<i32>> = Vec::new();
        let mut valid = Vec::new();
        for row in 0..starts.len() {
            let start = date_of(&starts[row], "start")?;
            let end = date_of(&ends[row], "end")?;
            let every = match &everys[row] {
                ScalarValue::Utf8(value) | ScalarValue::LargeUtf8(value) | ScalarValue::Utf8View(value) => {
                    value.clone()
                }
                other => return exec_err!("tidemark_periods: every must be text, got {other}"),
            };
            match (start, end, every) {
                (Some(start), Some(end), Some(every)) => {
                    let Some(cadence) = Cadence::parse(&every) else {
                        return plan_err!("tidemark_periods: every must be 'day', 'week' or 'month', got '{every}'");
                    };
                    let ends = period_ends(start, end, cadence).map_err(|message| {
                        datafusion::error::DataFusionError::Execution(format!("tidemark_periods: {message}"))
                    })?;
                    days.extend(ends.into_iter().map(|day| i32::try_from(day).ok()));
                    valid.push(true);
                }
                _ => valid.push(false),
            }
            offsets.push(i32::try_from(days.len()).unwrap_or(i32::MAX));
        }
        let values: ArrayRef = Arc::new(Date32Array::from(days));
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Date32, true)),
            OffsetBuffer::new(offsets.into()),
            values,
            Some(valid.into()),
        )?;
        if scalar_only {
            Ok(ColumnarValue::Scalar(ScalarValue::List(Arc::new(list))))
        } else {
            Ok(ColumnarValue::Array(Arc::new(list)))
        }
    }
}
