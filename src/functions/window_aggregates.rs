//! `tidemark_window_*(value, day, start, end, every, days…)`: every trailing window of a group
//! at every period end, in one hash-aggregation pass.
//!
//! The calendar (`start`, `end`, `every`, as `tidemark_periods`) and the window lengths are
//! constants, given as plain scalars: DataFusion expands every argument of an aggregate to a
//! full column for each batch, which costs next to nothing for a date or a number and a lot
//! for a list. The result is a list per window length, in the order given, each a list with
//! one value per period end.
//!
//! The period ends `p` and the window starts `p − days` cut the day axis into segments. The
//! additive and selective kinds (sum, min, max, last) keep one slot per segment and group and
//! add each row to the slot of its day; a window is then the few segments between its start and
//! its end, combined without subtraction (an empty window is exactly 0 or NULL, never a
//! rounding residue). Distinct counts and percentiles keep the group's (day, value) points and
//! read each window off them sorted. Partial states are the segment slots (or the points) as
//! lists, so DataFusion's two-phase and spilling aggregation work as for any aggregate.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Float64Array, Int64Array, ListArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{internal_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::PhysicalExpr;

mod groups;
use groups::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Sum,
    Min,
    Max,
    Last,
    CountDistinct,
    Percentile,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sum => "tidemark_window_sum",
            Kind::Min => "tidemark_window_min",
            Kind::Max => "tidemark_window_max",
            Kind::Last => "tidemark_window_last",
            Kind::CountDistinct => "tidemark_window_count_distinct",
            Kind::Percentile => "tidemark_window_percentile",
        }
    }

    /// Arguments before the calendar: value, day (and the fraction of a percentile).
    fn leading(self) -> usize {
        if self == Kind::Percentile {
            3
        } else {
            2
        }
    }

    fn usage(self) -> String {
        let extra = if self == Kind::Percentile { ", fraction" } else { "" };
        format!("{}(value, day{extra}, start, end, every, days, ...)", self.name())
    }

    fn output_type(self) -> DataType {
        if self == Kind::CountDistinct {
            DataType::Int64
        } else {
            DataType::Float64
        }
    }
}

pub(super) fn all() -> Vec<AggregateUDF> {
    [
        Kind::Sum,
        Kind::Min,
        Kind::Max,
        Kind::Last,
        Kind::CountDistinct,
        Kind::Percentile,
    ]
    .into_iter()
    .map(|kind| {
        AggregateUDF::new_from_impl(WindowAggregate {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    })
    .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowAggregate {
    kind: Kind,
    signature: Signature,
}

fn list_of(data_type: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(data_type, true)))
}

/// The result: per window length, a list with one value per period end.
fn result_type(kind: Kind) -> DataType {
    list_of(list_of(kind.output_type()))
}

fn is_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

impl AggregateUDFImpl for WindowAggregate {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let usage = self.kind.usage();
        let leading = self.kind.leading();
        if arg_types.len() < leading + 4 {
            return plan_err!(
                "{usage} takes at least {} arguments, got {}",
                leading + 4,
                arg_types.len()
            );
        }
        let value = match self.kind {
            Kind::CountDistinct => arg_types[0].clone(),
            _ if arg_types[0].is_numeric() || arg_types[0] == DataType::Null => DataType::Float64,
            _ => return plan_err!("{usage}: value must be a number, got {}", arg_types[0]),
        };
        let day = match &arg_types[1] {
            DataType::Date32 => DataType::Date32,
            other if is_integer(other) || other == &DataType::Null => DataType::Int64,
            other => {
                return plan_err!("{usage}: day must be a date or a day number (days since 1970-01-01), got {other}")
            }
        };
        let mut types = vec![value, day];
        if self.kind == Kind::Percentile {
            if !arg_types[2].is_numeric() {
                return plan_err!("{usage}: fraction must be a number, got {}", arg_types[2]);
            }
            types.push(DataType::Float64);
        }
        types.extend([DataType::Date32, DataType::Date32, DataType::Utf8]);
        for days in &arg_types[leading + 3..] {
            if !is_integer(days) {
                return plan_err!("{usage}: window lengths must be whole numbers of days, got {days}");
            }
            types.push(DataType::Int64);
        }
        Ok(types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(result_type(self.kind))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field = |suffix: &str, data_type: DataType| {
            Arc::new(Field::new(format!("{}[{suffix}]", args.name), list_of(data_type), true))
        };
        Ok(match self.kind {
            // Only the slots that hold something: (segment, value), and the day for `last`.
            Kind::Sum | Kind::Min | Kind::Max => {
                vec![field("segments", DataType::Int32), field("values", DataType::Float64)]
            }
            Kind::Last => vec![
                field("segments", DataType::Int32),
                field("values", DataType::Float64),
                field("days", DataType::Int64),
            ],
            Kind::Percentile => vec![field("days", DataType::Int64), field("values", DataType::Float64)],
            Kind::CountDistinct => vec![field("days", DataType::Int64), field("values", DataType::Binary)],
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleGroup {
            inner: self.groups(&args)?,
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups(&args)?))
    }
}

/// The value of a constant argument; a plan error naming `what` when it is not a constant.
pub(super) fn literal<'a>(expression: &'a Arc<dyn PhysicalExpr>, what: &str, usage: &str) -> Result<&'a ScalarValue> {
    match expression.downcast_ref::<Literal>() {
        Some(literal) => Ok(literal.value()),
        None => plan_err!("{usage}: {what} must be a constant, got {expression}"),
    }
}

impl WindowAggregate {
    fn groups(&self, args: &AccumulatorArgs) -> Result<WindowGroups> {
        let usage = self.kind.usage();
        let leading = self.kind.leading();
        if args.exprs.len() < leading + 4 {
            return internal_err!("{usage}: {} arguments planned", args.exprs.len());
        }
        if args.is_distinct {
            return plan_err!("{usage}: DISTINCT is not supported (use tidemark_window_count_distinct)");
        }
        let fraction = if self.kind == Kind::Percentile {
            match literal(&args.exprs[2], "fraction", &usage)? {
                ScalarValue::Float64(Some(f)) if (0.0..=1.0).contains(f) => *f,
                other => return plan_err!("{usage}: fraction must be between 0 and 1, got {other}"),
            }
        } else {
            0.0
        };
        let date = |index: usize, what: &str| -> Result<chrono::NaiveDate> {
            match literal(&args.exprs[index], what, &usage)? {
                ScalarValue::Date32(Some(days)) => chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                    .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(i64::from(*days))))
                    .ok_or_else(|| {
                        datafusion::error::DataFusionError::Plan(format!("{usage}: {what} is out of range"))
                    }),
                other => plan_err!("{usage}: {what} must be a date, got {other}"),
            }
        };
        let (start, end) = (date(leading, "start")?, date(leading + 1, "end")?);
        let every = match literal(&args.exprs[leading + 2], "every", &usage)? {
            ScalarValue::Utf8(Some(text)) => super::Cadence::parse(text).ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(format!(
                    "{usage}: every must be 'day', 'week' or 'month', got '{text}'"
                ))
            })?,
            other => return plan_err!("{usage}: every must be 'day', 'week' or 'month', got {other}"),
        };
        let periods = super::period_ends(start, end, every)
            .map_err(|message| datafusion::error::DataFusionError::Plan(format!("{usage}: {message}")))?;
        let mut windows = Vec::new();
        for expression in &args.exprs[leading + 3..] {
            match literal(expression, "days", &usage)? {
                ScalarValue::Int64(Some(days)) if *days > 0 => windows.push(*days),
                other => return plan_err!("{usage}: days must be a positive whole number, got {other}"),
            }
        }
        let calendar = Arc::new(Calendar::new(periods, windows, &usage)?);
        WindowGroups::new(self.kind, calendar, fraction, args.expr_fields[0].data_type())
    }
}

/// Where the windows start and end, as segments of the day axis.
#[derive(Debug)]
struct Calendar {
    periods: Vec<i64>,
    /// The window lengths in days, in the order given.
    windows: Vec<i64>,
    /// Days up to this one lie before every window.
    first: i64,
    /// `segment_of[d − first − 1]`: the segment of day `d` in (`first`, `last`].
    segment_of: Vec<u32>,
    segments: usize,
    /// Per window length, per period: the segments the window covers (`start..end`).
    spans: Vec<Vec<(usize, usize)>>,
}

/// The widest day range a calendar indexes directly.
const MAX_SPAN_DAYS: i64 = 1 << 24;

impl Calendar {
    fn new(periods: Vec<i64>, windows: Vec<i64>, usage: &str) -> Result<Calendar> {
        let mut boundaries: Vec<i64> = periods.clone();
        for days in &windows {
            boundaries.extend(periods.iter().map(|p| p - days));
        }
        boundaries.sort_unstable();
        boundaries.dedup();
        let segments = boundaries.len().saturating_sub(1);
        let first = boundaries.first().copied().unwrap_or(0);
        let last = boundaries.last().copied().unwrap_or(0);
        if last - first > MAX_SPAN_DAYS {
            return plan_err!("{usage}: the periods and their windows span more than {MAX_SPAN_DAYS} days");
        }
        let mut segment_of = Vec::with_capacity((last - first).max(0) as usize);
        for segment in 0..segments {
            for _ in boundaries[segment]..boundaries[segment + 1] {
                segment_of.push(segment as u32);
            }
        }
        let index = |day: i64| boundaries.binary_search(&day).unwrap_or_default();
        let spans = windows
            .iter()
            .map(|days| periods.iter().map(|p| (index(p - days), index(*p))).collect())
            .collect();
        Ok(Calendar {
            periods,
            windows,
            first,
            segment_of,
            segments,
            spans,
        })
    }

    fn segment(&self, day: i64) -> Option<usize> {
        let offset = day - self.first - 1;
        if offset < 0 {
            return None;
        }
        self.segment_of.get(offset as usize).map(|s| *s as usize)
    }

    /// The points of `sorted` (by day) inside the window of length `days` ending at period `k`.
    fn window<'a, T>(&self, sorted: &'a [(i64, T)], days: i64, k: usize) -> &'a [(i64, T)] {
        let end = self.periods[k];
        let from = sorted.partition_point(|(day, _)| *day <= end - days);
        let to = sorted.partition_point(|(day, _)| *day <= end);
        &sorted[from..to.max(from)]
    }

    /// Values per group in a result: one per window length and period.
    fn width(&self) -> usize {
        self.windows.len() * self.periods.len()
    }
}

/// Day numbers of a `day` argument (a day number or a date).
enum Days<'a> {
    Number(&'a Int64Array),
    Date(&'a Date32Array),
}

impl Days<'_> {
    fn of(array: &ArrayRef) -> Result<Days<'_>> {
        match array.data_type() {
            DataType::Int64 => Ok(Days::Number(array.as_primitive::<Int64Type>())),
            DataType::Date32 => Ok(Days::Date(array.as_primitive())),
            other => internal_err!("window aggregate day planned as {other}"),
        }
    }

    fn get(&self, row: usize) -> Option<i64> {
        match self {
            Days::Number(a) => a.is_valid(row).then(|| a.value(row)),
            Days::Date(a) => a.is_valid(row).then(|| i64::from(a.value(row))),
        }
    }
}

/// DataFusion's `percentile_cont`: linear interpolation between the closest ranks, with the
/// interpolation weight rounded down to a multiple of 1e-6.
pub(super) fn percentile_cont(values: &mut [f64], fraction: f64) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    if n == 1 {
        return Some(values[0]);
    }
    if fraction == 0.0 {
        return values.iter().copied().min_by(f64::total_cmp);
    }
    if fraction == 1.0 {
        return values.iter().copied().max_by(f64::total_cmp);
    }
    let index = fraction * ((n - 1) as f64);
    let (lower, upper) = (index.floor() as usize, index.ceil() as usize);
    let (_, lower_value, _) = values.select_nth_unstable_by(lower, f64::total_cmp);
    let lower_value = *lower_value;
    if lower == upper {
        return Some(lower_value);
    }
    let (_, upper_value, _) = values.select_nth_unstable_by(upper, f64::total_cmp);
    let upper_value = *upper_value;
    let weight = ((index - lower as f64) * 1_000_000.0) as usize as f64 / 1_000_000.0;
    Some(lower_value + (upper_value - lower_value) * weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_segments_cover_each_window() {
        // Periods every 7 days, a 10-day window.
        let calendar = Calendar::new(vec![100, 107, 114], vec![10], "test").unwrap();
        // Boundaries 90, 97, 100, 104, 107, 114.
        assert_eq!(calendar.first, 90);
        assert_eq!(calendar.segments, 5);
        assert_eq!(calendar.segment(90), None);
        assert_eq!(calendar.segment(91), Some(0));
        assert_eq!(calendar.segment(97), Some(0));
        assert_eq!(calendar.segment(98), Some(1));
        assert_eq!(calendar.segment(114), Some(4));
        assert_eq!(calendar.segment(115), None);
        // (90, 100] is segments 0 and 1; (97, 107] is 1, 2, 3; (104, 114] is 3 and 4.
        assert_eq!(calendar.spans, vec![vec![(0, 2), (1, 4), (3, 5)]]);
        // A 7-day window as well: its starts 93, 100, 107 add the boundary 93.
        let two = Calendar::new(vec![100, 107, 114], vec![10, 7], "test").unwrap();
        assert_eq!(two.segments, 6);
        assert_eq!(
            two.spans,
            vec![vec![(0, 3), (2, 5), (4, 6)], vec![(1, 3), (3, 5), (5, 6)]]
        );
    }

    #[test]
    fn percentile_matches_datafusion_interpolation() {
        assert_eq!(percentile_cont(&mut [3.0, 1.0, 2.0, 4.0], 0.5), Some(2.5));
        assert_eq!(percentile_cont(&mut [5.0], 0.25), Some(5.0));
        assert_eq!(percentile_cont(&mut [], 0.5), None);
        assert_eq!(percentile_cont(&mut [1.0, 9.0], 0.0), Some(1.0));
    }
}
