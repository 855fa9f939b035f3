//! Standard 5-field cron schedules (`*/5 * * * *`, `0 3 * * MON-FRI`, `@daily`) as CronJob's
//! `spec.schedule` accepts them: parsing with kube-style errors and the next firing time.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};

/// The `@` shorthands and the five fields they stand for.
const DESCRIPTORS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTH_NAMES: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far ahead `next_after` looks before deciding a schedule never fires (e.g. `0 0 30 2 *`).
const SEARCH_YEARS: i32 = 5;

/// One field's allowed range and its value names.
struct FieldSpec {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The number the first name stands for (1 for months, 0 for weekdays).
    names_start: u32,
}

const MINUTE: FieldSpec = FieldSpec {
    min: 0,
    max: 59,
    names: &[],
    names_start: 0,
};
const HOUR: FieldSpec = FieldSpec {
    min: 0,
    max: 23,
    names: &[],
    names_start: 0,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    min: 1,
    max: 31,
    names: &[],
    names_start: 0,
};
const MONTH: FieldSpec = FieldSpec {
    min: 1,
    max: 12,
    names: MONTH_NAMES,
    names_start: 1,
};
/// 7 is accepted as Sunday.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    min: 0,
    max: 7,
    names: DAY_NAMES,
    names_start: 0,
};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Day-of-month or day-of-week was a bare `*`/`?`: then both must match, else either.
    day_field_is_star: bool,
}

/// Why a schedule does not parse (the text becomes the 422 detail).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// Parses a CronJob schedule.
pub fn parse_cron(schedule: &str) -> Result<CronSchedule, CronError> {
    let trimmed = schedule.trim();
    let expanded = if trimmed.starts_with('@') {
        DESCRIPTORS
            .iter()
            .find(|(name, _)| *name == trimmed)
            .map(|(_, fields)| *fields)
            .ok_or_else(|| CronError(format!("unrecognized descriptor: {trimmed}")))?
    } else {
        trimmed
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError(format!(
            "expected exactly 5 fields, found {}: {}",
            fields.len(),
            trimmed
        )));
    }
    let (days_of_month, dom_star) = parse_field(fields[2], &DAY_OF_MONTH)?;
    let (mut days_of_week, dow_star) = parse_field(fields[4], &DAY_OF_WEEK)?;
    if days_of_week & (1 << 7) != 0 {
        days_of_week |= 1;
    }
    Ok(CronSchedule {
        minutes: parse_field(fields[0], &MINUTE)?.0,
        hours: parse_field(fields[1], &HOUR)?.0,
        days_of_month,
        months: parse_field(fields[3], &MONTH)?.0,
        days_of_week,
        day_field_is_star: dom_star || dow_star,
    })
}

/// A comma list of `*`, `?`, `n`, `a-b`, each optionally `/step`. Returns the bits and whether
/// the field was a bare star.
fn parse_field(field: &str, spec: &FieldSpec) -> Result<(u64, bool), CronError> {
    let mut bits = 0u64;
    let mut bare_star = false;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(parse_number(s, "step")?)),
            None => (part, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            bare_star |= step.is_none() || step == Some(1);
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (parse_value(a, spec)?, parse_value(b, spec)?)
        } else {
            let value = parse_value(range, spec)?;
            (value, if step.is_some() { spec.max } else { value })
        };
        check_range(part, low, high, step, spec)?;
        let step = step.unwrap_or(1);
        bits |= (low..=high)
            .step_by(step as usize)
            .fold(0u64, |acc, v| acc | (1 << v));
    }
    Ok((bits, bare_star))
}

fn check_range(
    part: &str,
    low: u32,
    high: u32,
    step: Option<u32>,
    spec: &FieldSpec,
) -> Result<(), CronError> {
    if low < spec.min {
        return Err(CronError(format!(
            "beginning of range ({low}) below minimum ({}): {part}",
            spec.min
        )));
    }
    if high > spec.max {
        return Err(CronError(format!(
            "end of range ({high}) above maximum ({}): {part}",
            spec.max
        )));
    }
    if low > high {
        return Err(CronError(format!(
            "beginning of range ({low}) beyond end of range ({high}): {part}"
        )));
    }
    if step == Some(0) {
        return Err(CronError(format!(
            "step of range should be a positive number: {part}"
        )));
    }
    Ok(())
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, CronError> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = spec.names.iter().position(|name| *name == lower) {
        return Ok(index as u32 + spec.names_start);
    }
    parse_number(text, "value")
}

fn parse_number(text: &str, what: &str) -> Result<u32, CronError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 4 {
        return Err(CronError(format!(
            "failed to parse int from {text}: invalid {what}"
        )));
    }
    text.parse()
        .map_err(|_| CronError(format!("failed to parse int from {text}: invalid {what}")))
}

impl CronSchedule {
    /// The first firing strictly after `after` (UTC), or None when the schedule never fires
    /// within the next few years (e.g. February 30th).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after_naive(after.naive_utc())
            .map(|t| DateTime::from_naive_utc_and_offset(t, Utc))
    }

    /// The same on wall-clock time, for callers that evaluate in another time zone.
    pub fn next_after_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit_year = start.year() + SEARCH_YEARS;
        let mut t = start;
        while t.year() <= limit_year {
            if !bit(self.months, t.month()) {
                t = first_of_next_month(t)?;
            } else if !self.day_matches(t.date()) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
            } else if !bit(self.hours, t.hour()) {
                t = t.with_minute(0)? + Duration::hours(1);
            } else if !bit(self.minutes, t.minute()) {
                t += Duration::minutes(1);
            } else {
                return Some(t);
            }
        }
        None
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = bit(self.days_of_month, date.day());
        let dow = bit(self.days_of_week, date.weekday().num_days_from_sunday());
        if self.day_field_is_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn bit(bits: u64, value: u32) -> bool {
    bits & (1 << value) != 0
}

fn first_of_next_month(t: NaiveDateTime) -> Option<NaiveDateTime> {
    let (year, month) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    fn next(schedule: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        parse_cron(schedule).expect(schedule).next_after(after)
    }

    #[test]
    fn next_firing_times() {
        let base = at(2024, 1, 31, 23, 58); // a Wednesday
        let cases: &[(&str, DateTime<Utc>)] = &[
            ("* * * * *", at(2024, 1, 31, 23, 59)),
            ("*/5 * * * *", at(2024, 2, 1, 0, 0)),
            ("0 * * * *", at(2024, 2, 1, 0, 0)),
            ("@hourly", at(2024, 2, 1, 0, 0)),
            ("30 2 * * *", at(2024, 2, 1, 2, 30)),
            ("0 0 29 2 *", at(2024, 2, 29, 0, 0)),
            ("0 9 * * MON-FRI", at(2024, 2, 1, 9, 0)),
            ("0 9 * * sat,sun", at(2024, 2, 3, 9, 0)),
            ("0 0 1 JAN *", at(2025, 1, 1, 0, 0)),
            ("@yearly", at(2025, 1, 1, 0, 0)),
            ("0 0 * * 7", at(2024, 2, 4, 0, 0)),
            ("15,45 1-3/2 * * *", at(2024, 2, 1, 1, 15)),
            // day-of-month OR day-of-week when both are restricted
            ("0 0 15 * 5", at(2024, 2, 2, 0, 0)),
        ];
        for (schedule, expected) in cases {
            assert_eq!(next(schedule, base), Some(*expected), "{schedule}");
        }
    }

    #[test]
    fn strictly_after_and_impossible_dates() {
        assert_eq!(
            next("0 0 * * *", at(2024, 3, 1, 0, 0)),
            Some(at(2024, 3, 2, 0, 0))
        );
        assert_eq!(next("0 0 30 2 *", at(2024, 1, 1, 0, 0)), None);
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, &str)] = &[
            ("* * *", "expected exactly 5 fields, found 3: * * *"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("x * * * *", "failed to parse int from x: invalid value"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ];
        for (schedule, message) in cases {
            assert_eq!(
                parse_cron(schedule).map(|_| ()),
                Err(CronError(message.to_string())),
                "{schedule}"
            );
        }
    }
}
