//! Cron expressions: five fields (minute first) or six (seconds first), evaluated in UTC.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

pub use croner::errors::CronError;

/// Parses an expression.
pub fn parse(expr: &str) -> Result<Cron, CronError> {
    CronParser::builder().seconds(Seconds::Optional).build().parse(expr)
}

/// The latest slot at or before `now`, if any.
pub fn latest_slot(cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&now, true).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_expressions() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:17:42Z").expect("valid").with_timezone(&Utc);
        let hourly = parse("0 * * * *").expect("five fields");
        assert_eq!(latest_slot(&hourly, now).expect("slot").to_rfc3339(), "2026-11-23T10:00:00+00:00");
        let every_5s = parse("*/5 * * * * *").expect("six fields");
        assert_eq!(latest_slot(&every_5s, now).expect("slot").to_rfc3339(), "2026-11-23T10:17:40+00:00");
        assert!(parse("not a cron").is_err());
        assert!(parse("61 * * * *").is_err());
    }
}
