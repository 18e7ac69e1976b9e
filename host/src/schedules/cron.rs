//! Cron patterns read in a time zone: five fields (minute to weekday) or six
//! (seconds first), the slots they give around daylight-saving changes as
//! `croner` computes them in the zone, and the pattern in words.

use chrono::{LocalResult, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// How many seconds past `after` a search steps through before it gives up
/// (only around a change of the clocks does it take more than one).
const SEARCH_STEPS: usize = 3600;

/// A pattern in its zone.
#[derive(Debug, Clone)]
pub struct Pattern {
    cron: Cron,
    zone: Tz,
}

/// Which field was wrong, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PatternError {
    #[error("cron: {0}")]
    Cron(String),
    #[error("timezone: {0:?} is not an IANA time zone (such as UTC or Europe/Paris)")]
    Zone(String),
}

impl Pattern {
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, PatternError> {
        let zone: Tz = timezone.parse().map_err(|_| PatternError::Zone(timezone.to_owned()))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| PatternError::Cron(format!("{cron:?}: {e}")))?;
        Ok(Self { cron, zone })
    }

    /// The first slot strictly after `after` (Unix ms). Slots are whole
    /// seconds (the search starts from the second `after` is in). In the hour
    /// a zone's clocks go back, a local time happens twice: the search works
    /// on local times, so an answer before `after` is the earlier of the two,
    /// and the later one is taken instead.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut from = Utc
            .timestamp_millis_opt(after.div_euclid(1000) * 1000)
            .single()?
            .with_timezone(&self.zone);
        for _ in 0..SEARCH_STEPS {
            let found = self.cron.find_next_occurrence(&from, false).ok()?;
            let mut at = found.timestamp_millis();
            if at <= after
                && let LocalResult::Ambiguous(_, later) = self.zone.from_local_datetime(&found.naive_local())
            {
                at = later.timestamp_millis();
            }
            if at > after {
                return Some(at);
            }
            from += chrono::Duration::seconds(1);
        }
        None
    }

    /// The newest slot at or before `at` (Unix ms).
    pub fn latest_until(&self, at: i64) -> Option<i64> {
        let at = Utc
            .timestamp_millis_opt(at.div_euclid(1000) * 1000)
            .single()?
            .with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The next `n` slots after `after`.
    pub fn next_runs(&self, after: i64, n: usize) -> Vec<i64> {
        let mut slots = Vec::with_capacity(n);
        let mut at = after;
        while slots.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    slots.push(next);
                    at = next;
                }
                None => break,
            }
        }
        slots
    }

    /// The pattern in words ("At 09:00 on Monday"), with its zone.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.cron.describe(), self.zone.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339()
    }

    #[test]
    fn seconds_are_optional_and_zones_apply() {
        let every_2s = Pattern::parse("*/2 * * * * *", "UTC").unwrap();
        assert_eq!(
            every_2s.next_after(ms("2026-01-01T00:00:00.500Z")),
            Some(ms("2026-01-01T00:00:02Z"))
        );
        assert_eq!(
            every_2s.latest_until(ms("2026-01-01T00:00:03Z")),
            Some(ms("2026-01-01T00:00:02Z"))
        );
        let nine_paris = Pattern::parse("0 9 * * *", "Europe/Paris").unwrap();
        // Winter: UTC+1.
        assert_eq!(
            utc(nine_paris.next_after(ms("2026-01-10T00:00:00Z")).unwrap()),
            "2026-01-10T08:00:00+00:00"
        );
        assert!(
            nine_paris.describe().contains("Europe/Paris"),
            "{}",
            nine_paris.describe()
        );
        assert!(matches!(Pattern::parse("0 9 * *", "UTC"), Err(PatternError::Cron(_))));
        assert!(matches!(
            Pattern::parse("0 9 * * *", "Mars/Olympus"),
            Err(PatternError::Zone(_))
        ));
    }

    #[test]
    fn daylight_saving_changes_neither_skip_nor_repeat_a_day() {
        // Europe/Paris springs forward at 02:00 on 2026-03-29 (02:30 does not
        // exist) and falls back at 03:00 on 2026-10-25 (02:30 happens twice).
        let half_past_two = Pattern::parse("30 2 * * *", "Europe/Paris").unwrap();
        // The missing 02:30 runs once, at 03:00 local (the end of the gap).
        let spring: Vec<String> = half_past_two
            .next_runs(ms("2026-03-28T12:00:00Z"), 2)
            .into_iter()
            .map(utc)
            .collect();
        assert_eq!(spring, ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]);
        // The doubled 02:30 runs once, the first time.
        let autumn: Vec<String> = half_past_two
            .next_runs(ms("2026-10-24T12:00:00Z"), 2)
            .into_iter()
            .map(utc)
            .collect();
        assert_eq!(autumn, ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]);
        // Inside the repeated hour, the next slot is still after now.
        let every_10 = Pattern::parse("*/10 * * * *", "Europe/Paris").unwrap();
        let now = ms("2026-10-25T01:05:00Z");
        assert_eq!(utc(every_10.next_after(now).unwrap()), "2026-10-25T01:10:00+00:00");
        let mut at = ms("2026-10-24T23:55:00Z");
        for _ in 0..20 {
            let next = every_10.next_after(at).unwrap();
            assert!(next > at, "{} after {}", utc(next), utc(at));
            at = next;
        }
    }
}
