//! `--since`: an age (`90s`, `15m`, `1h30m`, `2d`), an RFC 3339 time or date, or epoch ms.

use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{Date, OffsetDateTime};

/// The epoch-ms instant `text` names, relative to `now_ms` for ages.
///
/// Accepted forms:
/// - an age, as `humantime` reads it: one or more `<number><unit>` (`ms`, `s`, `m`, `h`, `d`,
///   `w`, and their long names: `1h30m`, `2 days`);
/// - RFC 3339: `2026-11-26T05:00:00Z`, `2026-11-26T05:00:00.250+02:00` (a space may replace
///   the `T`; `Z`/`z` or an offset is required);
/// - a date: `2026-11-26` (midnight UTC);
/// - epoch milliseconds: `1795671601123`.
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    let help = "expected an age (90s, 15m, 1h, 2d, 1h30m), an RFC 3339 time (2026-11-26T05:00:00Z), a date (2026-11-26) or epoch milliseconds";
    if text.is_empty() {
        return Err(format!("empty --since: {help}"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text:?} is too large for epoch milliseconds"));
    }
    if let Ok(age) = humantime::parse_duration(text) {
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        return Ok(now_ms.saturating_sub(age_ms));
    }
    // A date is exactly `YYYY-MM-DD`: time's ISO 8601 date parser would also take the date
    // of `2026-11-26T05:40:01`, an RFC 3339 time without its required offset.
    let instant = match Date::parse(text, &Iso8601::DATE) {
        Ok(date) if text.len() == 10 => Ok(date.midnight().assume_utc()),
        _ => OffsetDateTime::parse(text, &Rfc3339),
    };
    let instant = instant.map_err(|_| format!("cannot read {text:?}: {help}"))?;
    u64::try_from(instant.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is before 1970"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_671_601_123; // 2026-11-26T05:40:01.123Z

    #[test]
    fn ages_count_back_from_now() {
        assert_eq!(parse_since("90s", NOW).unwrap(), NOW - 90_000);
        assert_eq!(parse_since("15m", NOW).unwrap(), NOW - 900_000);
        assert_eq!(parse_since("1h", NOW).unwrap(), NOW - 3_600_000);
        assert_eq!(parse_since("1h30m", NOW).unwrap(), NOW - 5_400_000);
        assert_eq!(parse_since("2d", NOW).unwrap(), NOW - 172_800_000);
        assert_eq!(parse_since("500ms", NOW).unwrap(), NOW - 500);
        assert_eq!(parse_since(" 1w ", NOW).unwrap(), NOW - 604_800_000);
        assert_eq!(parse_since("1h 30min", NOW).unwrap(), NOW - 5_400_000);
        assert_eq!(
            parse_since("100000w", 5).unwrap(),
            0,
            "saturates at the epoch"
        );
    }

    #[test]
    fn rfc3339_times_and_dates() {
        assert_eq!(parse_since("2026-11-26T05:40:01.123Z", 0).unwrap(), NOW);
        assert_eq!(parse_since("2026-11-26 05:40:01.123z", 0).unwrap(), NOW);
        assert_eq!(
            parse_since("2026-11-26T07:40:01.123+02:00", 0).unwrap(),
            NOW
        );
        assert_eq!(
            parse_since("2026-11-26T05:10:01.123456-00:30", 0).unwrap(),
            NOW
        );
        assert_eq!(parse_since("2026-11-26T05:40:01.1Z", 0).unwrap(), NOW - 23);
        assert_eq!(parse_since("1970-01-01", 0).unwrap(), 0);
        assert_eq!(parse_since("2000-02-29", 0).unwrap(), 951_782_400_000);
        assert_eq!(
            parse_since("2026-11-26", 0).unwrap(),
            NOW - (5 * 3600 + 40 * 60 + 1) * 1000 - 123
        );
    }

    #[test]
    fn epoch_milliseconds() {
        assert_eq!(parse_since("1795671601123", 0).unwrap(), NOW);
        assert_eq!(parse_since("0", 7).unwrap(), 0);
    }

    #[test]
    fn nonsense_is_rejected_with_the_accepted_forms() {
        for bad in [
            "",
            "yesterday",
            "1x",
            "h",
            "2026-13-01",
            "2026-02-30",
            "2026-11-26T25:00:00Z",
            "2026-11-26T05:40:01",
            "2026-11-26T05:40:01+0200",
            "1969-12-31",
            "-5m",
        ] {
            let err = parse_since(bad, NOW).expect_err(bad);
            assert!(
                err.contains("expected an age") || err.contains("before 1970"),
                "{bad}: {err}"
            );
        }
    }
}
