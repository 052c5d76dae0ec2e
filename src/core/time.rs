//! Virtual time: integer nanoseconds since the scenario start, duration parsing,
//! and the calendar (wall-clock start, calendar minutes, the daily quota reset in a time zone).

use chrono::{DateTime, Days, FixedOffset, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Nanoseconds since the scenario start (virtual time) or a duration in nanoseconds.
pub type Nanos = u64;

/// One microsecond in nanoseconds.
pub const MICROSECOND: Nanos = 1_000;
/// One millisecond in nanoseconds.
pub const MILLISECOND: Nanos = 1_000_000;
/// One second in nanoseconds.
pub const SECOND: Nanos = 1_000_000_000;
/// One minute in nanoseconds: the length of every per-minute quota window.
pub const MINUTE: Nanos = 60 * SECOND;
/// One hour in nanoseconds.
pub const HOUR: Nanos = 60 * MINUTE;
/// One (24-hour) day in nanoseconds; calendar days at DST changes are 23 or 25 hours.
pub const DAY: Nanos = 24 * HOUR;
/// The longest span virtual time is asked to cover (a horizon, a response): 400 days. Sums of a
/// few such spans stay far below `u64::MAX` (584 years), so time arithmetic cannot overflow.
pub const MAX_SPAN: Nanos = 400 * DAY;

/// Parses a duration such as `"30s"`, `"1.5m"`, `"250ms"`, `"2h"`, `"1d"` or `"1h30m"` exactly
/// (decimal fractions are exact, never rounded through a float).
pub fn parse_duration(text: &str) -> Result<Nanos, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("expected a duration such as \"30s\", \"500ms\" or \"2h\", got an empty string".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => MICROSECOND as u128,
            "ms" => MILLISECOND as u128,
            "s" => SECOND as u128,
            "m" | "min" => MINUTE as u128,
            "h" => HOUR as u128,
            "d" => DAY as u128,
            _ => {
                return Err(format!(
                "expected a duration such as \"30s\", \"500ms\" or \"2h\" (units ns, us, ms, s, m, h, d), got {text:?}"
            ))
            }
        };
        let value = parse_decimal_scaled(num, scale)
            .ok_or_else(|| format!("expected a duration such as \"30s\", \"500ms\" or \"2h\", got {text:?}"))?;
        total = total.saturating_add(value);
        rest = next;
    }
    u64::try_from(total).map_err(|_| format!("duration {text:?} is too long"))
}

/// Parses a non-negative decimal number (`"12"`, `"0.25"`) multiplied by `scale`, exactly,
/// rejecting results that are not whole after scaling.
pub(crate) fn parse_decimal_scaled(num: &str, scale: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int_value: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int_value.checked_mul(scale)?;
    let mut place = scale;
    for digit in frac.chars() {
        let d = digit.to_digit(10)? as u128;
        if place % 10 != 0 {
            // Finer than the unit can express: accept only trailing zeros.
            if d != 0 {
                return None;
            }
            continue;
        }
        place /= 10;
        value = value.checked_add(d * place)?;
    }
    Some(value)
}

/// Formats nanoseconds in the largest unit that divides them exactly (`400d`, `1h`, `90s`,
/// `250ms`), as a user would write it in a scenario.
pub fn format_exact(ns: Nanos) -> String {
    for (unit, name) in [
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (MILLISECOND, "ms"),
    ] {
        if ns >= unit && ns % unit == 0 {
            return format!("{}{name}", ns / unit);
        }
    }
    format_duration(ns)
}

/// Formats nanoseconds as a short human duration (`"38.909233s"`, `"250ms"`).
pub fn format_duration(ns: Nanos) -> String {
    if ns >= SECOND || ns == 0 {
        let secs = ns / SECOND;
        let frac = ns % SECOND;
        if frac == 0 {
            format!("{secs}s")
        } else {
            let f = format!("{frac:09}");
            format!("{secs}.{}s", f.trim_end_matches('0'))
        }
    } else if ns >= MILLISECOND && ns % MILLISECOND == 0 {
        format!("{}ms", ns / MILLISECOND)
    } else {
        format!("{ns}ns")
    }
}

/// Maps virtual time to the wall clock: calendar minutes (for fixed windows) and the daily
/// quota reset at 00:00 in a time zone (America/Los_Angeles for Gemini), DST included.
#[derive(Debug, Clone)]
pub struct Calendar {
    start: DateTime<FixedOffset>,
    /// Nanoseconds since the Unix epoch of the scenario start.
    start_epoch_ns: i128,
    tz: Tz,
    /// The first daily reset after the start (most runs end before it: no time-zone lookup).
    first_reset: Nanos,
}

impl Calendar {
    /// A calendar starting at `start` whose days end at midnight in `tz`.
    pub fn new(start: DateTime<FixedOffset>, tz: Tz) -> Self {
        let utc = start.with_timezone(&Utc);
        let start_epoch_ns = utc.timestamp() as i128 * SECOND as i128 + utc.timestamp_subsec_nanos() as i128;
        let mut cal = Calendar {
            start,
            start_epoch_ns,
            tz,
            first_reset: 0,
        };
        cal.first_reset = cal.reset_after(0);
        cal
    }

    /// The wall-clock start of the scenario.
    pub fn start(&self) -> DateTime<FixedOffset> {
        self.start
    }

    /// The time zone whose midnight resets daily quotas.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Start of the calendar minute (UTC-aligned, which every whole-minute offset shares)
    /// containing `now`; may be before 0 for the first minute, so it is returned as `i128`.
    pub fn minute_start(&self, now: Nanos) -> i128 {
        let abs = self.start_epoch_ns + now as i128;
        now as i128 - abs.rem_euclid(MINUTE as i128)
    }

    /// The local time of day at `now` in the calendar's zone, in hours (0 ≤ h < 24).
    pub fn local_hour(&self, now: Nanos) -> f64 {
        let abs = self.start_epoch_ns + now as i128;
        let secs = abs.div_euclid(SECOND as i128) as i64;
        let instant = Utc
            .timestamp_opt(secs, 0)
            .single()
            .expect("virtual time stays within chrono's range");
        let t = instant.with_timezone(&self.tz).time();
        use chrono::Timelike;
        t.num_seconds_from_midnight() as f64 / 3600.0
    }

    /// The first calendar-minute boundary strictly after `now`.
    pub fn next_minute(&self, now: Nanos) -> Nanos {
        (self.minute_start(now) + MINUTE as i128) as Nanos
    }

    /// Microseconds since the Unix epoch at `now` (the clock proxies on several machines share).
    pub fn unix_micros(&self, now: Nanos) -> i64 {
        ((self.start_epoch_ns + now as i128).div_euclid(1000)) as i64
    }

    /// The instant `unix_micros` microseconds after the Unix epoch, as nanoseconds since the
    /// start (0 if before it).
    pub fn from_unix_micros(&self, unix_micros: i64) -> Nanos {
        (unix_micros as i128 * 1000 - self.start_epoch_ns).max(0) as Nanos
    }

    /// The first daily reset (midnight in the calendar's zone) strictly after `now`.
    pub fn next_day_start(&self, now: Nanos) -> Nanos {
        if now < self.first_reset {
            return self.first_reset;
        }
        self.reset_after(now)
    }

    /// [`Calendar::next_day_start`], looked up in the time zone.
    fn reset_after(&self, now: Nanos) -> Nanos {
        let abs = self.start_epoch_ns + now as i128;
        let secs = abs.div_euclid(SECOND as i128) as i64;
        let nanos = abs.rem_euclid(SECOND as i128) as u32;
        let instant = Utc
            .timestamp_opt(secs, nanos)
            .single()
            .expect("virtual time stays within chrono's range");
        let local_date = instant.with_timezone(&self.tz).date_naive();
        let next_date = local_date
            .checked_add_days(Days::new(1))
            .expect("date within chrono's range");
        let midnight = next_date.and_time(NaiveTime::MIN);
        // Midnight never falls in a DST gap in America/Los_Angeles; for zones where it might,
        // the earliest valid instant at or after local midnight is the reset.
        let reset = match self.tz.from_local_datetime(&midnight).earliest() {
            Some(t) => t.with_timezone(&Utc),
            None => {
                let mut probe = midnight;
                loop {
                    probe += chrono::Duration::minutes(1);
                    if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                        break t.with_timezone(&Utc);
                    }
                }
            }
        };
        let reset_ns = reset.timestamp() as i128 * SECOND as i128 + reset.timestamp_subsec_nanos() as i128;
        (reset_ns - self.start_epoch_ns) as Nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(start: &str) -> Calendar {
        Calendar::new(
            DateTime::parse_from_rfc3339(start).unwrap(),
            chrono_tz::America::Los_Angeles,
        )
    }

    #[test]
    fn parses_durations_exactly() {
        assert_eq!(parse_duration("30s"), Ok(30 * SECOND));
        assert_eq!(parse_duration("1.5m"), Ok(90 * SECOND));
        assert_eq!(parse_duration("250ms"), Ok(250 * MILLISECOND));
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration("0.000000001s"), Ok(1));
        assert_eq!(parse_duration("45.837906927s"), Ok(45_837_906_927));
        assert_eq!(parse_duration("2d"), Ok(2 * DAY));
        assert!(parse_duration("0.5ns").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("9999999d").is_err());
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(38 * SECOND + 909_233_000), "38.909233s");
        assert_eq!(format_duration(60 * SECOND), "60s");
        assert_eq!(format_duration(250 * MILLISECOND), "250ms");
        assert_eq!(format_duration(7), "7ns");
    }

    #[test]
    fn calendar_minutes_follow_the_wall_clock() {
        let c = cal("2025-10-15T09:00:30.5-07:00");
        assert_eq!(c.next_minute(0), 29_500_000_000);
        assert_eq!(c.next_minute(29_499_999_999), 29_500_000_000);
        assert_eq!(c.next_minute(29_500_000_000), 89_500_000_000);
        assert_eq!(c.minute_start(0), -30_500_000_000);
    }

    #[test]
    fn daily_reset_is_pacific_midnight() {
        // 09:00 PDT -> midnight is 15 h later.
        let c = cal("2025-10-15T09:00:00-07:00");
        assert_eq!(c.next_day_start(0), 15 * HOUR);
        assert_eq!(c.next_day_start(15 * HOUR - 1), 15 * HOUR);
        assert_eq!(c.next_day_start(15 * HOUR), 39 * HOUR);
        // Same instant written in UTC gives the same reset.
        let u = cal("2025-10-15T16:00:00Z");
        assert_eq!(u.next_day_start(0), 15 * HOUR);
    }

    #[test]
    fn dst_days_last_23_and_25_hours() {
        // 2025-03-09 is the spring-forward day in Los Angeles: 23 hours long.
        let c = cal("2025-03-08T12:00:00-08:00");
        let d1 = c.next_day_start(0);
        assert_eq!(d1, 12 * HOUR);
        let d2 = c.next_day_start(d1);
        assert_eq!(d2 - d1, 23 * HOUR);
        // 2025-11-02 is the fall-back day: 25 hours long.
        let c = cal("2025-11-01T12:00:00-07:00");
        let d1 = c.next_day_start(0);
        assert_eq!(d1, 12 * HOUR);
        let d2 = c.next_day_start(d1);
        assert_eq!(d2 - d1, 25 * HOUR);
        assert_eq!(c.next_day_start(d2) - d2, 24 * HOUR);
    }

    #[test]
    fn the_first_days_shortcut_agrees_with_the_time_zone() {
        // A start just before midnight and one on a DST day: every instant of the first day
        // and around its end gets the reset the zone lookup gives.
        for start in ["2025-10-15T23:59:59.999999999-07:00", "2025-11-02T00:30:00-07:00"] {
            let c = cal(start);
            let first = c.next_day_start(0);
            for now in [0, 1, first / 2, first - 1, first, first + 1, first + 30 * HOUR] {
                assert_eq!(c.next_day_start(now), c.reset_after(now), "{start} at {now}");
            }
        }
    }
}
