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

/// The state of every group of one window aggregate.
struct WindowGroups {
    kind: Kind,
    calendar: Arc<Calendar>,
    fraction: f64,
    groups: usize,
    /// Sum, min, max, last: one value per group and segment.
    slots: Vec<f64>,
    /// Min, max, last: whether the slot has a value.
    present: Vec<bool>,
    /// Last: the day of the slot's value.
    last_days: Vec<i64>,
    /// Percentile: each group's (day, value) points.
    points: Vec<Vec<(i64, f64)>>,
    /// Count distinct: each group's (day, value id) points.
    distinct: Vec<Vec<(i64, u32)>>,
    interned: HashMap<Box<[u8]>, u32>,
    interned_values: Vec<Box<[u8]>>,
    /// Bytes the interned values take (twice: the map's key and the list).
    interned_bytes: usize,
    /// Points held by `points` and `distinct`.
    point_count: usize,
    converter: Option<RowConverter>,
}

impl WindowGroups {
    fn new(kind: Kind, calendar: Arc<Calendar>, fraction: f64, value_type: &DataType) -> Result<WindowGroups> {
        let converter = match kind {
            Kind::CountDistinct => Some(RowConverter::new(vec![SortField::new(value_type.clone())])?),
            _ => None,
        };
        Ok(WindowGroups {
            kind,
            calendar,
            fraction,
            groups: 0,
            slots: Vec::new(),
            present: Vec::new(),
            last_days: Vec::new(),
            points: Vec::new(),
            distinct: Vec::new(),
            interned: HashMap::new(),
            interned_values: Vec::new(),
            interned_bytes: 0,
            point_count: 0,
            converter,
        })
    }

    fn dense(&self) -> bool {
        matches!(self.kind, Kind::Sum | Kind::Min | Kind::Max | Kind::Last)
    }

    fn resize(&mut self, groups: usize) {
        if groups <= self.groups {
            return;
        }
        let segments = self.calendar.segments;
        match self.kind {
            Kind::Sum => self.slots.resize(groups * segments, 0.0),
            Kind::Min | Kind::Max => {
                self.slots.resize(groups * segments, 0.0);
                self.present.resize(groups * segments, false);
            }
            Kind::Last => {
                self.slots.resize(groups * segments, 0.0);
                self.present.resize(groups * segments, false);
                self.last_days.resize(groups * segments, i64::MIN);
            }
            Kind::Percentile => self.points.resize_with(groups, Vec::new),
            Kind::CountDistinct => self.distinct.resize_with(groups, Vec::new),
        }
        self.groups = groups;
    }

    /// Adds one value of `day` to `slot`.
    fn add(&mut self, slot: usize, day: i64, value: f64) {
        match self.kind {
            Kind::Sum => self.slots[slot] += value,
            Kind::Min => {
                if !self.present[slot] || value < self.slots[slot] {
                    self.slots[slot] = value;
                    self.present[slot] = true;
                }
            }
            Kind::Max => {
                if !self.present[slot] || value > self.slots[slot] {
                    self.slots[slot] = value;
                    self.present[slot] = true;
                }
            }
            Kind::Last => {
                let newer = !self.present[slot]
                    || day > self.last_days[slot]
                    || (day == self.last_days[slot] && value > self.slots[slot]);
                if newer {
                    self.slots[slot] = value;
                    self.last_days[slot] = day;
                    self.present[slot] = true;
                }
            }
            Kind::Percentile | Kind::CountDistinct => {}
        }
    }

    fn intern(&mut self, row: &[u8]) -> u32 {
        if let Some(id) = self.interned.get(row) {
            return *id;
        }
        let id = self.interned_values.len() as u32;
        let key: Box<[u8]> = row.into();
        self.interned_bytes += 2 * key.len() + 64;
        self.interned_values.push(key.clone());
        self.interned.insert(key, id);
        id
    }

    fn take_groups(&self, emit_to: EmitTo) -> usize {
        match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        }
    }

    /// Removes the first `count` groups' dense slots.
    fn drain_dense(&mut self, count: usize) -> (Vec<f64>, Vec<bool>, Vec<i64>) {
        let cut = count * self.calendar.segments;
        let slots = drain_front(&mut self.slots, cut);
        let present = drain_front(&mut self.present, cut);
        let days = drain_front(&mut self.last_days, cut);
        self.groups -= count;
        (slots, present, days)
    }
}

/// Removes the first `count` items of `items` (all of them without copying when that is all).
fn drain_front<T>(items: &mut Vec<T>, count: usize) -> Vec<T> {
    if count >= items.len() {
        std::mem::take(items)
    } else {
        items.drain(..count).collect()
    }
}

/// The partial state of the slot kinds: per group, the segments that hold something, their
/// values (and, for `last`, their days).
fn sparse_state(
    kind: Kind,
    segments: Vec<i32>,
    values: Vec<f64>,
    days: Vec<i64>,
    lengths: &[usize],
) -> Result<Vec<ArrayRef>> {
    let mut state = vec![
        ragged_lists(
            Arc::new(datafusion::arrow::array::Int32Array::from(segments)),
            lengths.iter().copied(),
        )?,
        ragged_lists(Arc::new(Float64Array::from(values)), lengths.iter().copied())?,
    ];
    if kind == Kind::Last {
        state.push(ragged_lists(Arc::new(Int64Array::from(days)), lengths.iter().copied())?);
    }
    Ok(state)
}

/// A list array with `width` values per row.
fn fixed_lists(values: ArrayRef, rows: usize, width: usize) -> Result<ArrayRef> {
    let offsets: Vec<i32> = (0..=rows).map(|row| (row * width) as i32).collect();
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new_list_field(values.data_type().clone(), true)),
        OffsetBuffer::new(offsets.into()),
        values,
        None,
    )?))
}

/// The result for `rows` groups from their values, window by window and period by period: a
/// list per window length of a list per period.
fn window_lists(values: ArrayRef, rows: usize, calendar: &Calendar) -> Result<ArrayRef> {
    let inner = fixed_lists(values, rows * calendar.windows.len(), calendar.periods.len())?;
    fixed_lists(inner, rows, calendar.windows.len())
}

fn ragged_lists(values: ArrayRef, lengths: impl Iterator<Item = usize>) -> Result<ArrayRef> {
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new_list_field(values.data_type().clone(), true)),
        OffsetBuffer::from_lengths(lengths),
        values,
        None,
    )?))
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

impl GroupsAccumulator for WindowGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let days = Days::of(&values[1])?;
        let keep = |row: usize| opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        if self.kind == Kind::CountDistinct {
            let converter = self.converter.take().expect("distinct converter");
            let rows = converter.convert_columns(&[values[0].clone()])?;
            for (row, group) in group_indices.iter().enumerate() {
                if !keep(row) || values[0].is_null(row) {
                    continue;
                }
                let Some(day) = days.get(row) else { continue };
                let id = self.intern(rows.row(row).as_ref());
                self.distinct[*group].push((day, id));
                self.point_count += 1;
            }
            self.converter = Some(converter);
            return Ok(());
        }
        let numbers = values[0].as_primitive::<Float64Type>();
        for (row, group) in group_indices.iter().enumerate() {
            if !keep(row) || numbers.is_null(row) {
                continue;
            }
            let Some(day) = days.get(row) else { continue };
            let value = numbers.value(row);
            if self.kind == Kind::Percentile {
                self.points[*group].push((day, value));
                self.point_count += 1;
                continue;
            }
            if let Some(segment) = self.calendar.segment(day) {
                self.add(group * self.calendar.segments + segment, day, value);
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.resize(total_num_groups);
        let segments = self.calendar.segments;
        match self.kind {
            Kind::Sum | Kind::Min | Kind::Max | Kind::Last => {
                // Read the lists' flat values once; each row is a range of them.
                let segment_lists = values[0].as_list::<i32>();
                let offsets = segment_lists.value_offsets();
                let segment_values = segment_lists
                    .values()
                    .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
                let slot_values = values[1]
                    .as_list::<i32>()
                    .values()
                    .as_primitive::<Float64Type>()
                    .clone();
                let day_values = match self.kind {
                    Kind::Last => Some(values[2].as_list::<i32>().values().as_primitive::<Int64Type>().clone()),
                    _ => None,
                };
                for (row, group) in group_indices.iter().enumerate() {
                    if segment_lists.is_null(row) {
                        continue;
                    }
                    for index in offsets[row] as usize..offsets[row + 1] as usize {
                        let segment = segment_values.value(index) as usize;
                        if segment >= segments {
                            return internal_err!(
                                "{}: a partial state names segment {segment} of {segments}",
                                self.kind.name()
                            );
                        }
                        let day = day_values.as_ref().map(|days| days.value(index)).unwrap_or(0);
                        self.add(group * segments + segment, day, slot_values.value(index));
                    }
                }
            }
            Kind::Percentile => {
                let (day_lists, value_lists) = (values[0].as_list::<i32>(), values[1].as_list::<i32>());
                for (row, group) in group_indices.iter().enumerate() {
                    if day_lists.is_null(row) {
                        continue;
                    }
                    let (days, points) = (day_lists.value(row), value_lists.value(row));
                    let (days, points) = (days.as_primitive::<Int64Type>(), points.as_primitive::<Float64Type>());
                    self.points[*group].extend(days.values().iter().copied().zip(points.values().iter().copied()));
                    self.point_count += days.len();
                }
            }
            Kind::CountDistinct => {
                let (day_lists, value_lists) = (values[0].as_list::<i32>(), values[1].as_list::<i32>());
                for (row, group) in group_indices.iter().enumerate() {
                    if day_lists.is_null(row) {
                        continue;
                    }
                    let (days, encoded) = (day_lists.value(row), value_lists.value(row));
                    let days = days.as_primitive::<Int64Type>();
                    let encoded = encoded.as_binary::<i32>();
                    for index in 0..days.len() {
                        let id = self.intern(encoded.value(index));
                        self.distinct[*group].push((days.value(index), id));
                        self.point_count += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let count = self.take_groups(emit_to);
        let segments = self.calendar.segments;
        Ok(match self.kind {
            Kind::Sum | Kind::Min | Kind::Max | Kind::Last => {
                let (slots, present, days) = self.drain_dense(count);
                let held = |slot: usize| match self.kind {
                    // An empty sum and a sum of zeros add nothing.
                    Kind::Sum => slots[slot] != 0.0,
                    _ => present[slot],
                };
                let mut lengths = Vec::with_capacity(count);
                let (mut kept_segments, mut kept_values, mut kept_days) = (Vec::new(), Vec::new(), Vec::new());
                for group in 0..count {
                    let before = kept_segments.len();
                    for segment in 0..segments {
                        let slot = group * segments + segment;
                        if held(slot) {
                            kept_segments.push(segment as i32);
                            kept_values.push(slots[slot]);
                            if self.kind == Kind::Last {
                                kept_days.push(days[slot]);
                            }
                        }
                    }
                    lengths.push(kept_segments.len() - before);
                }
                sparse_state(self.kind, kept_segments, kept_values, kept_days, &lengths)?
            }
            Kind::Percentile => {
                let groups = drain_front(&mut self.points, count);
                self.groups -= count;
                self.point_count -= groups.iter().map(Vec::len).sum::<usize>();
                let days = Int64Array::from_iter_values(groups.iter().flatten().map(|(d, _)| *d));
                let values = Float64Array::from_iter_values(groups.iter().flatten().map(|(_, v)| *v));
                vec![
                    ragged_lists(Arc::new(days), groups.iter().map(Vec::len))?,
                    ragged_lists(Arc::new(values), groups.iter().map(Vec::len))?,
                ]
            }
            Kind::CountDistinct => {
                let groups = drain_front(&mut self.distinct, count);
                self.groups -= count;
                self.point_count -= groups.iter().map(Vec::len).sum::<usize>();
                let days = Int64Array::from_iter_values(groups.iter().flatten().map(|(d, _)| *d));
                let encoded: Vec<&[u8]> = groups
                    .iter()
                    .flatten()
                    .map(|(_, id)| self.interned_values[*id as usize].as_ref())
                    .collect();
                let values = BinaryArray::from_iter_values(encoded);
                vec![
                    ragged_lists(Arc::new(days), groups.iter().map(Vec::len))?,
                    ragged_lists(Arc::new(values), groups.iter().map(Vec::len))?,
                ]
            }
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let count = self.take_groups(emit_to);
        let calendar = self.calendar.clone();
        let periods = calendar.periods.len();
        let segments = calendar.segments;
        if self.dense() {
            let (slots, present, _) = self.drain_dense(count);
            let mut output: Vec<Option<f64>> = Vec::with_capacity(count * calendar.width());
            for group in 0..count {
                let base = group * segments;
                for spans in &calendar.spans {
                    for &(start, end) in spans {
                        let range = base + start..base + end;
                        let value = match self.kind {
                            Kind::Sum => Some(slots[range].iter().sum::<f64>()),
                            Kind::Min => range.filter(|s| present[*s]).map(|s| slots[s]).min_by(f64::total_cmp),
                            Kind::Max => range.filter(|s| present[*s]).map(|s| slots[s]).max_by(f64::total_cmp),
                            // Segments are in day order: the last one with a value holds the latest day.
                            _ => range.rev().find(|s| present[*s]).map(|s| slots[s]),
                        };
                        output.push(value);
                    }
                }
            }
            return window_lists(Arc::new(Float64Array::from(output)), count, &calendar);
        }
        if self.kind == Kind::Percentile {
            let groups = drain_front(&mut self.points, count);
            self.groups -= count;
            self.point_count -= groups.iter().map(Vec::len).sum::<usize>();
            let mut output: Vec<Option<f64>> = Vec::with_capacity(count * calendar.width());
            let mut scratch = Vec::new();
            for mut points in groups {
                points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                for &days in &calendar.windows {
                    for k in 0..periods {
                        scratch.clear();
                        scratch.extend(calendar.window(&points, days, k).iter().map(|(_, v)| *v));
                        output.push(percentile_cont(&mut scratch, self.fraction));
                    }
                }
            }
            return window_lists(Arc::new(Float64Array::from(output)), count, &calendar);
        }
        let groups = drain_front(&mut self.distinct, count);
        self.groups -= count;
        self.point_count -= groups.iter().map(Vec::len).sum::<usize>();
        let mut output: Vec<i64> = Vec::with_capacity(count * calendar.width());
        // Per value id, the window that last counted it.
        let mut seen: Vec<u32> = vec![u32::MAX; self.interned_values.len()];
        let mut stamp = 0u32;
        for mut points in groups {
            points.sort_unstable();
            for &days in &calendar.windows {
                for k in 0..periods {
                    stamp = stamp.wrapping_add(1);
                    if stamp == u32::MAX {
                        seen.iter_mut().for_each(|s| *s = u32::MAX);
                        stamp = 0;
                    }
                    let mut distinct = 0;
                    for (_, id) in calendar.window(&points, days, k) {
                        let mark = &mut seen[*id as usize];
                        if *mark != stamp {
                            *mark = stamp;
                            distinct += 1;
                        }
                    }
                    output.push(distinct);
                }
            }
        }
        window_lists(Arc::new(Int64Array::from(output)), count, &calendar)
    }

    /// Each row as its own group's state (DataFusion skips partial aggregation this way when
    /// it does not reduce the rows).
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let rows = values[0].len();
        if self.dense() {
            // A row is at most one slot: its day's segment.
            let days = Days::of(&values[1])?;
            let numbers = values[0].as_primitive::<Float64Type>();
            let mut lengths = Vec::with_capacity(rows);
            let (mut kept_segments, mut kept_values, mut kept_days) = (Vec::new(), Vec::new(), Vec::new());
            for row in 0..rows {
                let keep = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row)) && numbers.is_valid(row);
                let segment = days
                    .get(row)
                    .and_then(|day| self.calendar.segment(day).map(|s| (s, day)));
                match segment {
                    Some((segment, day)) if keep => {
                        kept_segments.push(segment as i32);
                        kept_values.push(numbers.value(row));
                        if self.kind == Kind::Last {
                            kept_days.push(day);
                        }
                        lengths.push(1);
                    }
                    _ => lengths.push(0),
                }
            }
            return sparse_state(self.kind, kept_segments, kept_values, kept_days, &lengths);
        }
        let mut single = WindowGroups::new(self.kind, self.calendar.clone(), self.fraction, values[0].data_type())?;
        let groups: Vec<usize> = (0..rows).collect();
        single.update_batch(values, &groups, opt_filter, rows)?;
        single.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        use std::mem::size_of;
        // Counted as they grow (this is called once per batch, so it may not walk the groups).
        self.slots.capacity() * size_of::<f64>()
            + self.present.capacity()
            + self.last_days.capacity() * size_of::<i64>()
            + self.points.capacity() * size_of::<Vec<(i64, f64)>>()
            + self.distinct.capacity() * size_of::<Vec<(i64, u32)>>()
            + self.point_count * size_of::<(i64, f64)>() * 3 / 2
            + self.interned_bytes
            + self.calendar.segment_of.capacity() * size_of::<u32>()
    }
}

/// The aggregate without GROUP BY (or where DataFusion asks for a plain accumulator): one group.
struct SingleGroup {
    inner: WindowGroups,
}

impl std::fmt::Debug for SingleGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner.kind.name())
    }
}

impl Accumulator for SingleGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map(|v| v.len()).unwrap_or(0);
        self.inner.update_batch(values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.resize(1);
        let array = self.inner.evaluate(EmitTo::All)?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.resize(1);
        self.inner
            .state(EmitTo::All)?
            .iter()
            .map(|array| ScalarValue::try_from_array(array, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map(|v| v.len()).unwrap_or(0);
        self.inner.merge_batch(states, &vec![0; rows], 1)
    }
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
