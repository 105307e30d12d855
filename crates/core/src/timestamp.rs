//! Times as tibridge keeps them (Unix seconds, UTC) and the text forms outside systems want.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch, UTC.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// STIX 2.1 timestamp with exactly millisecond precision and a literal `Z` (contract B.3):
/// `2024-01-15T10:00:00.000Z`.
pub fn stix_millis(unix_seconds: i64) -> String {
    format!("{}.000Z", utc_seconds(unix_seconds))
}

/// ISO 8601 UTC to the second, `2024-01-15T10:00:00Z` (Vision One, logs).
pub fn iso_seconds(unix_seconds: i64) -> String {
    format!("{}Z", utc_seconds(unix_seconds))
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, the part every form above shares.
fn utc_seconds(unix_seconds: i64) -> String {
    let t = to_datetime(unix_seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses RFC 3339 (`Z` or an offset, any fraction) into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok().map(|t| t.unix_timestamp())
}

/// Parses the looser forms sources use: RFC 3339, a zone-less `YYYY-MM-DDTHH:MM:SS[.f]`
/// (taken as UTC), a bare `YYYY-MM-DD`, or epoch seconds/microseconds as digits.
pub fn parse_loose(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(t) = parse_rfc3339(text) {
        return Some(t);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = text.parse().ok()?;
        // MISP first_seen/last_seen may be epoch microseconds.
        return Some(if n > 100_000_000_000_000 {
            n / 1_000_000
        } else if n > 100_000_000_000 {
            n / 1000
        } else {
            n
        });
    }
    let with_zone =
        if text.len() == 10 { format!("{text}T00:00:00Z") } else { format!("{}Z", text.trim_end_matches('Z')) };
    let with_zone = with_zone.replacen(' ', "T", 1);
    parse_rfc3339(&with_zone)
}

fn to_datetime(unix_seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Parses a duration like `90d`, `12h`, `30m`, `45s`, `2w` into seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let unit_seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    number.checked_mul(unit_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stix_timestamps_have_milliseconds_and_z() {
        assert_eq!(stix_millis(1_705_312_800), "2024-01-15T10:00:00.000Z");
        assert_eq!(iso_seconds(1_705_312_800), "2024-01-15T10:00:00Z");
    }

    #[test]
    fn loose_forms_parse() {
        assert_eq!(parse_loose("2024-01-15T10:00:00.123456+00:00"), Some(1_705_312_800));
        assert_eq!(parse_loose("2024-01-15T10:00:00"), Some(1_705_312_800));
        assert_eq!(parse_loose("2024-01-15"), Some(1_705_276_800));
        assert_eq!(parse_loose("1705312800"), Some(1_705_312_800));
        assert_eq!(parse_loose("1705312800000000"), Some(1_705_312_800));
        assert_eq!(parse_loose("yesterday"), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("5y"), None);
        assert_eq!(parse_duration("d"), None);
    }
}
