//! CronJob schedules: the standard 5-field syntax and `@` descriptors, with the error texts of
//! robfig/cron's `ParseStandard` (which upstream uses and whose messages reach the user).

use super::render::quote;
use super::{FieldError, Path};

/// One schedule field's bounds and optional names.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Bounds; 5] = [
    Bounds {
        min: 0,
        max: 59,
        names: &[],
    },
    Bounds {
        min: 0,
        max: 23,
        names: &[],
    },
    Bounds {
        min: 1,
        max: 31,
        names: &[],
    },
    Bounds {
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Bounds {
        min: 0,
        max: 6,
        names: DAYS,
    },
];

/// Upstream's `validateScheduleFormat`: the schedule parses, and `TZ=`/`CRON_TZ=` prefixes are
/// only tolerated on updates of schedules that already had one and without `timeZone`.
pub(crate) fn validate_schedule(
    schedule: &str,
    allow_tz: bool,
    time_zone: Option<&str>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Err(e) = parse_standard(schedule) {
        errs.push(FieldError::invalid(path, quote(schedule), &e));
    }
    if schedule.contains("TZ") {
        if allow_tz && time_zone.is_some() {
            errs.push(FieldError::invalid(
                path,
                quote(schedule),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz {
            errs.push(FieldError::invalid(
                path,
                quote(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    errs
}

/// Parses a standard cron spec; the error is robfig/cron's message.
pub(crate) fn parse_standard(spec: &str) -> Result<(), String> {
    parse_schedule(spec).map(|_| ())
}

/// Set when a field was `*` or `?` (robfig's `starBit`): decides the day-of-month /
/// day-of-week rule.
const STAR: u64 = 1 << 63;

/// A parsed schedule, as robfig/cron's `SpecSchedule` / `ConstantDelaySchedule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Bit `n` of each mask means value `n` matches; [`STAR`] marks a `*` field.
    Spec {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    /// `@every <duration>`, rounded to whole seconds (at least one).
    Every(std::time::Duration),
}

fn all_bits(min: u32, max: u32) -> u64 {
    (min..=max).fold(0, |acc, v| acc | (1 << v))
}

/// Parses a standard cron spec (a `TZ=` prefix is dropped; the caller handles zones).
pub fn parse_schedule(spec: &str) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    let spec = strip_time_zone(spec);
    if spec.starts_with('@') {
        return parse_descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let mut masks = [0u64; 5];
    for ((field, bounds), mask) in fields.iter().zip(FIELDS.iter()).zip(masks.iter_mut()) {
        for expr in field.split(',') {
            *mask |= parse_range(expr, bounds)?;
        }
    }
    Ok(Schedule::Spec {
        minute: masks[0],
        hour: masks[1],
        dom: masks[2],
        month: masks[3],
        dow: masks[4],
    })
}

impl Schedule {
    /// The first activation strictly after `t` (wall-clock time in the schedule's zone), as
    /// robfig's `SpecSchedule.Next`; `None` when nothing matches within five years.
    pub fn next_after(&self, t: chrono::NaiveDateTime) -> Option<chrono::NaiveDateTime> {
        use chrono::{Datelike as _, Duration, NaiveDate, Timelike as _};
        let (minute, hour, dom, month, dow) = match *self {
            Schedule::Every(d) => {
                let secs = d.as_secs().max(1) as i64;
                // robfig: next = t + delay, truncated to whole seconds.
                let base = t.with_nanosecond(0)?;
                return Some(base + Duration::seconds(secs));
            }
            Schedule::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (minute, hour, dom, month, dow),
        };
        let bit = |mask: u64, v: u32| mask & (1 << v) != 0;
        let day_matches = |d: NaiveDate| {
            let dom_ok = bit(dom, d.day());
            let dow_ok = bit(dow, d.weekday().num_days_from_sunday());
            if dom & STAR != 0 || dow & STAR != 0 {
                dom_ok && dow_ok
            } else {
                dom_ok || dow_ok
            }
        };
        // Start at the next whole minute.
        let mut t = t.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = t.year() + 5;
        'wrap: loop {
            if t.year() > limit {
                return None;
            }
            while !bit(month, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                if t.year() > limit {
                    return None;
                }
            }
            while !day_matches(t.date()) {
                let m = t.month();
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                if t.month() != m {
                    continue 'wrap;
                }
            }
            while !bit(hour, t.hour()) {
                let d = t.date();
                t = t.with_minute(0)? + Duration::hours(1);
                if t.date() != d {
                    continue 'wrap;
                }
            }
            while !bit(minute, t.minute()) {
                let h = t.hour();
                t += Duration::minutes(1);
                if t.hour() != h {
                    continue 'wrap;
                }
            }
            return Some(t);
        }
    }
}

/// Drops a leading `TZ=zone ` / `CRON_TZ=zone ` (the zone itself is judged by the caller).
fn strip_time_zone(spec: &str) -> &str {
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec.split_once(' ')
            .map(|(_, rest)| rest.trim())
            .unwrap_or("")
    } else {
        spec
    }
}

fn parse_descriptor(d: &str) -> Result<Schedule, String> {
    let spec = |minute: u64, hour: u64, dom: u64, month: u64, dow: u64| Schedule::Spec {
        minute,
        hour,
        dom,
        month,
        dow,
    };
    let any_dom = all_bits(1, 31) | STAR;
    let any_month = all_bits(1, 12) | STAR;
    let any_dow = all_bits(0, 6) | STAR;
    match d {
        "@yearly" | "@annually" => Ok(spec(1, 1, 1 << 1, 1 << 1, any_dow)),
        "@monthly" => Ok(spec(1, 1, 1 << 1, any_month, any_dow)),
        "@weekly" => Ok(spec(1, 1, any_dom, any_month, 1)),
        "@daily" | "@midnight" => Ok(spec(1, 1, any_dom, any_month, any_dow)),
        "@hourly" => Ok(spec(1, all_bits(0, 23) | STAR, any_dom, any_month, any_dow)),
        _ => match d.strip_prefix("@every ") {
            Some(dur) => parse_duration(dur)
                .map(Schedule::Every)
                .map_err(|e| format!("failed to parse duration {d}: {e}")),
            None => Err(format!("unrecognized descriptor: {d}")),
        },
    }
}

/// One comma-separated element: `*`, `?`, `a`, `a-b`, each with an optional `/step`; returns
/// its bits (robfig's `getRange`).
fn parse_range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let mut extra = 0;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        extra = STAR;
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(low_high[0], b.names)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, parse_int_or_name(low_high[1], b.names)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            if low_high.len() == 1 {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok((start..=end)
        .step_by(step as usize)
        .fold(extra, |acc, v| acc | (1 << v)))
}

fn parse_int_or_name(expr: &str, names: &[&str]) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        // Month names start at 1, day names at 0.
        let offset = if names.len() == 12 { 1 } else { 0 };
        return Ok(i as u32 + offset);
    }
    must_parse_int(expr)
}

/// Go's `strconv.Atoi` plus robfig's non-negative check.
fn must_parse_int(expr: &str) -> Result<u32, String> {
    let num: i64 = expr.parse().map_err(|_| {
        format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: invalid syntax",
            quote(expr)
        )
    })?;
    if num < 0 {
        return Err(format!("negative number ({num}) not allowed: {expr}"));
    }
    u32::try_from(num).map_err(|_| {
        format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: value out of range",
            quote(expr)
        )
    })
}

/// Go's `time.ParseDuration` grammar: `[-+]?(\d+(\.\d*)?unit)+`, or `0`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("time: invalid duration {}", quote(s));
    let body = s.trim_start_matches(['-', '+']);
    if body == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    if body.is_empty() {
        return Err(invalid());
    }
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 || rest[..num_len] == *"." {
            return Err(invalid());
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", quote(s)));
        }
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                quote(unit),
                quote(s)
            ));
        }
        total += num
            * match unit {
                "ns" => 1e-9,
                "us" | "µs" | "μs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                _ => 3600.0,
            };
        rest = &rest[unit_len..];
    }
    Ok(std::time::Duration::from_secs_f64(total.min(1e12)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * *",
            "0 9-17 * * MON-FRI",
            "15,45 */2 1 jan,jul ?",
            "@hourly",
            "@every 1h30m",
            "TZ=UTC 0 0 * * *",
            "5/15 * * * *",
        ] {
            assert_eq!(parse_standard(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_with_robfig_messages() {
        let cases = [
            ("foo", "expected exactly 5 fields, found 1: [foo]"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
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
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("1/2/3 * * * *", "too many slashes: 1/2/3"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "@every 5",
                "failed to parse duration @every 5: time: missing unit in duration \"5\"",
            ),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_standard(spec), Err(want.to_string()), "{spec}");
        }
    }

    fn at(s: &str) -> chrono::NaiveDateTime {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn next(spec: &str, from: &str) -> String {
        parse_schedule(spec)
            .unwrap()
            .next_after(at(from))
            .map(|t| t.format("%Y-%m-%d %H:%M:%S %a").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn next_fire_times() {
        let cases = [
            (
                "* * * * *",
                "2024-01-01 10:00:00",
                "2024-01-01 10:01:00 Mon",
            ),
            (
                "* * * * *",
                "2024-01-01 10:00:59",
                "2024-01-01 10:01:00 Mon",
            ),
            (
                "*/15 * * * *",
                "2024-01-01 10:14:00",
                "2024-01-01 10:15:00 Mon",
            ),
            (
                "*/15 * * * *",
                "2024-01-01 10:45:00",
                "2024-01-01 11:00:00 Mon",
            ),
            (
                "5/20 * * * *",
                "2024-01-01 10:26:00",
                "2024-01-01 10:45:00 Mon",
            ),
            (
                "0 9-17/4 * * *",
                "2024-01-01 13:00:00",
                "2024-01-01 17:00:00 Mon",
            ),
            (
                "0 0 * * *",
                "2024-12-31 23:59:00",
                "2025-01-01 00:00:00 Wed",
            ),
            // Month ends: the 31st skips short months; Feb 29 needs a leap year.
            (
                "0 0 31 * *",
                "2024-01-31 00:00:00",
                "2024-03-31 00:00:00 Sun",
            ),
            (
                "0 0 29 2 *",
                "2024-03-01 00:00:00",
                "2028-02-29 00:00:00 Tue",
            ),
            ("30 12 L-fixed * *", "", ""),
            // Names and lists.
            (
                "0 9 * * MON-FRI",
                "2024-01-05 09:00:00",
                "2024-01-08 09:00:00 Mon",
            ),
            (
                "0 0 1 jan,jul *",
                "2024-01-01 00:00:00",
                "2024-07-01 00:00:00 Mon",
            ),
            (
                "15,45 * * * sun",
                "2024-01-06 23:50:00",
                "2024-01-07 00:15:00 Sun",
            ),
            // Both day fields restricted: either matches (Vixie cron's OR rule).
            (
                "0 0 13 * 5",
                "2024-01-01 00:00:00",
                "2024-01-05 00:00:00 Fri",
            ),
            (
                "0 0 13 * 5",
                "2024-01-12 00:00:00",
                "2024-01-13 00:00:00 Sat",
            ),
            // A `*` day field makes it AND; `*/2` is not a star (robfig).
            (
                "0 0 * * 5",
                "2024-01-01 00:00:00",
                "2024-01-05 00:00:00 Fri",
            ),
            (
                "0 0 */2 * 1",
                "2024-01-01 00:00:00",
                "2024-01-03 00:00:00 Wed",
            ),
            ("@hourly", "2024-01-01 10:30:00", "2024-01-01 11:00:00 Mon"),
            ("@daily", "2024-01-01 10:30:00", "2024-01-02 00:00:00 Tue"),
            ("@weekly", "2024-01-01 10:30:00", "2024-01-07 00:00:00 Sun"),
            ("@monthly", "2024-01-31 10:30:00", "2024-02-01 00:00:00 Thu"),
            ("@yearly", "2024-01-01 00:00:00", "2025-01-01 00:00:00 Wed"),
            (
                "@every 1h30m",
                "2024-01-01 10:00:10",
                "2024-01-01 11:30:10 Mon",
            ),
            // Never: Feb 30.
            ("0 0 30 2 *", "2024-01-01 00:00:00", ""),
        ];
        for (spec, from, want) in cases {
            if from.is_empty() {
                assert!(parse_schedule(spec).is_err());
                continue;
            }
            assert_eq!(next(spec, from), want, "{spec} after {from}");
        }
    }

    #[test]
    fn tz_in_schedule_is_rejected_on_create() {
        let errs = validate_schedule("TZ=UTC 0 0 * * *", false, None, &Path::new("spec.schedule"));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message().contains("use timeZone field instead"));
        assert!(validate_schedule("TZ=UTC 0 0 * * *", true, None, &Path::new("s")).is_empty());
    }
}
