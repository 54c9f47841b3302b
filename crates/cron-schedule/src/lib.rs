//! Cron schedules (five fields or a descriptor like `@hourly`) in a time zone: CronWorkflows'
//! and calendar EventSources' times.

#![forbid(unsafe_code)]

use chrono::{DateTime, Utc};

#[derive(Debug)]
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    pub fn parse(schedule: &str, timezone: &str) -> Result<Schedule, String> {
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
        Ok(Schedule { cron, tz })
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|x| x.with_timezone(&Utc))
    }

    /// The latest scheduled time in `(after, now]`.
    pub fn latest_in(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Nothing older than a week can still be run; do not walk years of minutes.
        let mut t = after.max(now - chrono::Duration::days(7));
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
