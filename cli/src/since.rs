//! `--since`: an age (`90s`, `15m`, `1h30m`, `2d`), an RFC 3339 time or date, or epoch ms.

/// The epoch-ms instant `text` names, relative to `now_ms` for ages.
///
/// Accepted forms:
/// - an age: one or more `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`, `w` (`1h30m`);
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
    if let Some(age) = parse_age(text) {
        return Ok(now_ms.saturating_sub(age));
    }
    if text.len() == 10 {
        if let Some(days) = parse_date(text) {
            return to_ms(days, 0).ok_or_else(|| format!("{text:?} is before 1970"));
        }
    }
    parse_rfc3339(text).ok_or_else(|| format!("cannot read {text:?}: {help}"))
}

/// `1h30m` → ms. `None` if not an age.
fn parse_age(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms = match rest.get(..letters)? {
            "ms" => 1,
            "s" | "sec" => 1000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return None,
        };
        rest = rest.get(letters..)?;
        total = total.checked_add(number.checked_mul(unit_ms)?)?;
    }
    Some(total)
}

/// `YYYY-MM-DD` → days since 1970-01-01.
fn parse_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year: i64 = num(text.get(0..4)?)?.into();
    let month = num(text.get(5..7)?)?;
    let day = num(text.get(8..10)?)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn num(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn to_ms(days: i64, ms_of_day: i64) -> Option<u64> {
    u64::try_from(days.checked_mul(86_400_000)?.checked_add(ms_of_day)?).ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` → epoch ms.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let days = parse_date(text.get(..10)?)?;
    let sep = text.as_bytes().get(10)?;
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let rest = text.get(11..)?;
    let (hh, mm, ss) = (
        num(rest.get(0..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    if rest.get(2..3)? != ":" || rest.get(5..6)? != ":" || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = rest.get(8..)?;
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let head = fraction.get(..digits.min(3))?;
        millis = i64::from(num(head)?) * 10i64.pow(3 - head.len() as u32);
        rest = fraction.get(digits..)?;
    }
    let offset_min: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.get(3..4)? != ":" {
                return None;
            }
            let (oh, om) = (num(rest.get(1..3)?)?, num(rest.get(4..6)?)?);
            sign * i64::from(oh * 60 + om)
        }
    };
    let ms_of_day = (i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss)) * 1000 + millis
        - offset_min * 60_000;
    to_ms(days, ms_of_day)
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
            let err = parse_since(bad, NOW).unwrap_err();
            assert!(
                err.contains("expected an age") || err.contains("before 1970"),
                "{bad}: {err}"
            );
        }
    }
}
