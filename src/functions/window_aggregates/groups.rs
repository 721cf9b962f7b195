//! The accumulators of the window aggregates: per group, the days seen and their values, turned
//! into one list per window length at every period end (`WindowGroups`, and `SingleGroup` for the
//! one-group case).

use super::*;

/// The state of every group of one window aggregate.
pub(super) struct WindowGroups {
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
    pub(super) fn new(
        kind: Kind,
        calendar: Arc<Calendar>,
        fraction: f64,
        value_type: &DataType,
    ) -> Result<WindowGroups> {
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
pub(super) fn drain_front<T>(items: &mut Vec<T>, count: usize) -> Vec<T> {
    if count >= items.len() {
        std::mem::take(items)
    } else {
        items.drain(..count).collect()
    }
}

/// The partial state of the slot kinds: per group, the segments that hold something, their
/// values (and, for `last`, their days).
pub(super) fn sparse_state(
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
pub(super) fn fixed_lists(values: ArrayRef, rows: usize, width: usize) -> Result<ArrayRef> {
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
pub(super) fn window_lists(values: ArrayRef, rows: usize, calendar: &Calendar) -> Result<ArrayRef> {
    let inner = fixed_lists(values, rows * calendar.windows.len(), calendar.periods.len())?;
    fixed_lists(inner, rows, calendar.windows.len())
}

pub(super) fn ragged_lists(values: ArrayRef, lengths: impl Iterator<Item = usize>) -> Result<ArrayRef> {
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new_list_field(values.data_type().clone(), true)),
        OffsetBuffer::from_lengths(lengths),
        values,
        None,
    )?))
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
pub(super) struct SingleGroup {
    pub(super) inner: WindowGroups,
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
