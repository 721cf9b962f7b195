//! Days and period ends of a metric model: day numbers since 1970-01-01 and the periods a
//! `periods:` spec lists.

use chrono::NaiveDate;

use crate::diagnostics::Diagnostic;

use super::spec::*;

/// The date of a day number.
pub(super) fn date_of(day: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Days::new(day.max(0) as u64)
}

pub(super) fn day_number(date: NaiveDate) -> i64 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
}

/// The period ends of a spec, as day numbers.
pub(super) fn period_ends(periods: &PeriodsSpec) -> Result<Vec<i64>, Diagnostic> {
    let parse = |text: &str, key: &str| {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| Diagnostic::new(format!("periods.{key}: '{text}' is not a date (YYYY-MM-DD)")))?;
        // Day numbers count from 1970-01-01 (what Arrow's dates are).
        match day_number(date) >= 0 {
            true => Ok(date),
            false => Err(Diagnostic::new(format!(
                "periods.{key}: '{text}' is before 1970-01-01, the first day a metric model's calendar can have"
            ))),
        }
    };
    if let Some(as_of) = &periods.as_of {
        if periods.every.is_some() || periods.start.is_some() || periods.end.is_some() {
            return Err(Diagnostic::new(
                "periods: give either as_of, or every with start and end",
            ));
        }
        return Ok(vec![day_number(parse(as_of, "as_of")?)]);
    }
    let (Some(every), Some(start), Some(end)) = (periods.every, &periods.start, &periods.end) else {
        return Err(Diagnostic::new(
            "periods: give either as_of, or every (day, week, month) with start and end",
        ));
    };
    let (start, end) = (parse(start, "start")?, parse(end, "end")?);
    let cadence = match every {
        Cadence::Day => crate::functions::Cadence::Day,
        Cadence::Week => crate::functions::Cadence::Week,
        Cadence::Month => crate::functions::Cadence::Month,
    };
    crate::functions::period_ends(start, end, cadence).map_err(|error| Diagnostic::new(error.to_string()))
}
