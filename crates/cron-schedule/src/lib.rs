//! Cron schedules (five fields, a descriptor like `@hourly`, or `@every DURATION`) in a time
//! zone: CronWorkflows' and calendar EventSources' times, as Argo reads them (robfig/cron's
//! `ParseStandard`).

#![forbid(unsafe_code)]

use chrono::{DateTime, Utc};

#[derive(Debug)]
pub struct Schedule(Times);

#[derive(Debug)]
enum Times {
    Cron(Box<croner::Cron>, chrono_tz::Tz),
    /// `@every 90s`: a fixed delay after the previous time, in whole seconds (robfig's
    /// `ConstantDelaySchedule`, at least one second).
    Every(chrono::Duration),
}

impl Schedule {
    pub fn parse(schedule: &str, timezone: &str) -> Result<Schedule, String> {
        if let Some(every) = schedule.trim().strip_prefix("@every") {
            let secs = go_duration_seconds(every.trim())
                .ok_or_else(|| format!("schedule {schedule:?}: expected @every followed by a duration such as 90s, 5m or 1h30m"))?;
            return Ok(Schedule(Times::Every(chrono::Duration::seconds(
                secs.max(1),
            ))));
        }
        let fields = schedule.split_whitespace().count();
        if !schedule.trim_start().starts_with('@') && fields != 5 {
            return Err(format!(
                "schedule {schedule:?}: expected 5 fields (minute hour day-of-month month day-of-week) or a descriptor like @hourly"
            ));
        }
        let cron = croner::Cron::new(schedule)
            .parse()
            .map_err(|e| format!("schedule {schedule:?}: {e}"))?;
        let tz = if timezone.is_empty() {
            chrono_tz::UTC
        } else {
            timezone
                .parse::<chrono_tz::Tz>()
                .map_err(|_| format!("timezone {timezone:?}: not an IANA time zone name"))?
        };
        Ok(Schedule(Times::Cron(Box::new(cron), tz)))
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.0 {
            Times::Cron(cron, tz) => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|x| x.with_timezone(&Utc)),
            // robfig: `t + delay`, less `t`'s fraction of a second.
            Times::Every(d) => {
                let whole = t - chrono::Duration::nanoseconds(t.timestamp_subsec_nanos() as i64);
                Some(whole + *d)
            }
        }
    }

    /// The latest scheduled time in `(after, now]`.
    pub fn latest_in(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Nothing older than a week can still be run; do not walk years of minutes.
        let mut t = after.max(now - chrono::Duration::days(7));
        if let Times::Every(d) = &self.0 {
            // A fixed delay: jump to the last multiple instead of walking each one.
            let first = self.next_after(t)?;
            if first > now {
                return None;
            }
            let steps = (now - first).num_seconds() / d.num_seconds().max(1);
            return Some(first + *d * steps as i32);
        }
        let mut latest = None;
        while let Some(n) = self.next_after(t) {
            if n > now {
                break;
            }
            latest = Some(n);
            t = n;
        }
        latest
    }
}

/// Whole seconds of a Go duration (`90s`, `5m`, `1h30m`, `1.5h`); `None` if it is not one.
fn go_duration_seconds(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total < 1e12).then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, m, s).unwrap()
    }

    #[test]
    fn every_is_a_fixed_delay_after_the_previous_time() {
        let s = Schedule::parse("@every 1m30s", "").unwrap();
        assert_eq!(s.next_after(at(10, 0, 0)), Some(at(10, 1, 30)));
        assert_eq!(
            s.latest_in(at(10, 0, 0), at(10, 7, 59)),
            Some(at(10, 7, 30))
        );
        assert_eq!(s.latest_in(at(10, 0, 0), at(10, 1, 29)), None);
        let short = Schedule::parse("@every 200ms", "").unwrap();
        assert_eq!(short.next_after(at(10, 0, 0)), Some(at(10, 0, 1)));
        assert!(Schedule::parse("@every soon", "")
            .unwrap_err()
            .contains("expected @every followed by a duration"));
    }
}
