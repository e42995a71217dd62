//! The JSON forms of metav1.Time, metav1.MicroTime and metav1.Duration: RFC 3339 timestamps in
//! UTC and Go duration strings, converted to and from the seconds/nanoseconds of the wire.

use std::fmt::Write;

const SECONDS_PER_DAY: i64 = 86_400;

/// `YYYY-MM-DDTHH:MM:SSZ`, or with six fractional digits when `micros` is given, as Go's
/// `time.RFC3339` / `RFC3339Micro` layouts print a UTC time. `None` for years outside
/// 0000–9999, which Go's `Time.MarshalJSON` refuses too.
pub(super) fn format(seconds: i64, micros: Option<u32>) -> Option<String> {
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if let Some(micros) = micros {
        // Writing to a String cannot fail.
        let _ = write!(text, ".{micros:06}");
    }
    text.push('Z');
    Some(text)
}

/// Parses an RFC 3339 timestamp into seconds since the epoch and nanoseconds.
pub(super) fn parse(text: &str) -> Option<(i64, u32)> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        for (index, digit) in fraction[..end].bytes().enumerate().take(9) {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - index as u32);
        }
        rest = &fraction[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &rest.as_bytes()[1..];
            if zone.len() != 5
                || zone[2] != b':'
                || !zone
                    .iter()
                    .enumerate()
                    .all(|(i, c)| i == 2 || c.is_ascii_digit())
            {
                return None;
            }
            let hours = i64::from(zone[0] - b'0') * 10 + i64::from(zone[1] - b'0');
            let minutes = i64::from(zone[3] - b'0') * 10 + i64::from(zone[4] - b'0');
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some((
        days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset,
        nanos,
    ))
}

/// Go's `time.Duration.String`: `1h2m3.5s`, `1.5s`, `100ms`, `2µs`, `0s`.
pub(super) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let mut magnitude = nanos.unsigned_abs();
    let mut text = String::new();
    if magnitude < 1_000_000_000 {
        let (precision, unit) = match magnitude {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        text.push_str(&fraction(magnitude, precision));
        text.push_str(unit);
    } else {
        let seconds = fraction(magnitude, 9);
        magnitude /= 1_000_000_000;
        let (hours, minutes) = (magnitude / 3600, magnitude / 60 % 60);
        if hours > 0 {
            let _ = write!(text, "{hours}h");
        }
        if hours > 0 || minutes > 0 {
            let _ = write!(text, "{minutes}m");
        }
        text.push_str(&seconds);
        text.push('s');
    }
    if nanos < 0 {
        text.insert(0, '-');
    }
    text
}

/// `value / 10^precision` with its fraction, trailing zeros dropped (Go's `fmtFrac` + `fmtInt`);
/// for whole seconds, only the seconds within the minute are kept.
fn fraction(value: u64, precision: u32) -> String {
    let scale = 10u64.pow(precision);
    let mut whole = value / scale;
    if precision == 9 {
        whole %= 60;
    }
    let part = value % scale;
    if part == 0 {
        return whole.to_string();
    }
    let digits = format!("{part:0width$}", width = precision as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a Go duration string (`1h30m`, `1.5s`, `-200ms`, `0`) into nanoseconds.
pub(super) fn parse_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..end];
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: u128 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_end..];
        let (whole, part) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && part.is_empty()) || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        total = total.checked_add(whole.checked_mul(scale)?)?;
        let mut place = scale;
        for digit in part.bytes() {
            place /= 10;
            total = total.checked_add(u128::from(digit - b'0') * place)?;
        }
    }
    let total = i64::try_from(total).ok()?;
    Some(if negative { -total } else { total })
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_go() {
        assert_eq!(format(0, None).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(format(1_714_979_289, None).unwrap(), "2024-05-06T07:08:09Z");
        assert_eq!(
            format(951_782_400, Some(5)).unwrap(),
            "2000-02-29T00:00:00.000005Z"
        );
        assert_eq!(format(-1, None).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(
            format(-62_135_596_800, None).unwrap(),
            "0001-01-01T00:00:00Z"
        );
        assert_eq!(format(253_402_300_800, None), None, "year 10000");
    }

    #[test]
    fn timestamps_parse_back() {
        for seconds in [0, 1_714_979_289, 951_782_400, -1, -62_135_596_800] {
            assert_eq!(parse(&format(seconds, None).unwrap()), Some((seconds, 0)));
        }
        assert_eq!(
            parse("2024-05-06T09:08:09.123456+02:00"),
            Some((1_714_979_289, 123_456_000))
        );
        assert_eq!(parse("2024-05-06 07:08:09Z"), None);
        assert_eq!(parse("2024-13-06T07:08:09Z"), None);
        assert_eq!(parse("2024-05-06T07:08:09"), None);
        assert_eq!(parse("2024-05-06T07:08:09+2:00"), None);
    }

    #[test]
    fn durations_format_like_go() {
        for (nanos, text) in [
            (0, "0s"),
            (5, "5ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-3_723_000_000_000, "-1h2m3s"),
        ] {
            assert_eq!(format_duration(nanos), text);
            assert_eq!(parse_duration(text), Some(nanos), "{text}");
        }
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("1.5.5s"), None);
    }
}
