//! Timestamps as IoT Hub writes them: ISO-8601 UTC with seven fractional digits and `Z`.
//!
//! The hub never reads the clock here; callers pass `now`. Parsing accepts what the SDKs send:
//! any number of fractional digits, with or without `Z` (a missing zone means UTC).

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};

/// The `0001-01-01T00:00:00Z` value IoT Hub uses for "never" (e.g. a new device's `lastActivityTime`).
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// The far-future `endTime` of a job that has not finished (.NET `DateTime.MaxValue`).
pub const FAR_FUTURE: &str = "9999-12-31T23:59:59.9999999Z";

/// Why a timestamp did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an ISO-8601 timestamp (expected e.g. 2026-01-02T03:04:05.678Z)")]
pub struct TimestampError {
    /// The text that failed to parse.
    pub value: String,
}

/// Formats `at` as `YYYY-MM-DDTHH:MM:SS.fffffffZ` (seven fractional digits, as the service does).
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    // Written field by field: chrono's strftime interpreter was a fifth of the hub's instructions in a
    // job (callgrind, docs/benchmarks.md). The fraction is in 100 ns ticks; a leap second's extra
    // nanoseconds (chrono reports them above 999_999_999) are clamped into the last tick.
    let date = at.date_naive();
    let time = at.time();
    let ticks = time.nanosecond().min(999_999_999) / 100;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ticks:07}Z",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Formats `at` with milliseconds (`YYYY-MM-DDTHH:MM:SS.mmmZ`), the form the docs show in `$metadata`.
pub fn format_timestamp_millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an ISO-8601 timestamp; a missing offset means UTC.
///
/// # Errors
/// [`TimestampError`] when the text is not a timestamp.
pub fn parse_timestamp(value: &str) -> Result<DateTime<Utc>, TimestampError> {
    let trimmed = value.trim();
    if let Ok(with_zone) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(with_zone.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| TimestampError { value: value.to_owned() })?;
    Ok(Utc.from_utc_datetime(&naive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_digits() {
        let at = parse_timestamp("2022-10-19T12:10:35.7728649Z").unwrap();
        assert_eq!(format_timestamp(at), "2022-10-19T12:10:35.7728649Z");
        let early = parse_timestamp("0042-01-02T03:04:05.0000001Z").unwrap();
        assert_eq!(format_timestamp(early), "0042-01-02T03:04:05.0000001Z");
        let whole = parse_timestamp("2019-05-04T15:53:00Z").unwrap();
        assert_eq!(format_timestamp(whole), "2019-05-04T15:53:00.0000000Z");
        assert_eq!(format_timestamp_millis(whole), "2019-05-04T15:53:00.000Z");
    }

    proptest::proptest! {
        #[test]
        fn format_parses_back(secs in -62_135_596_800i64..253_402_300_799, ticks in 0u32..10_000_000) {
            let at = DateTime::from_timestamp(secs, ticks * 100).unwrap();
            proptest::prop_assert_eq!(parse_timestamp(&format_timestamp(at)).unwrap(), at);
        }
    }

    #[test]
    fn accepts_sdk_forms() {
        for text in [
            "2019-05-04T15:53:00.077Z",
            "2019-05-08T12:19:56.868000Z",
            "2016-09-29T18:18:52.7418462",
            NEVER,
            FAR_FUTURE,
        ] {
            assert!(parse_timestamp(text).is_ok(), "{text}");
        }
        assert!(parse_timestamp("tomorrow").is_err());
        assert!(parse_timestamp("").is_err());
    }
}
