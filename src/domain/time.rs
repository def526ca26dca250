//! Timestamps are kept as canonical strings (`YYYY-MM-DDTHH:MM:SS.sssZ`): that is the only form the API and the
//! writers ever emit, and canonical strings of years 0000–9999 sort chronologically, so no parsed type is needed
//! in the hot path.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

pub type Timestamp = String;

pub fn now() -> Timestamp {
    format_ts(Utc::now())
}

/// Seconds since a timestamp (negative clock skew reads as 0).
pub fn age_seconds(ts: &str) -> Option<f64> {
    let t = DateTime::parse_from_rfc3339(ts).ok()?;
    let ms = (Utc::now() - t.with_timezone(&Utc)).num_milliseconds().max(0);
    Some(ms as f64 / 1000.0)
}

pub fn format_ts(t: DateTime<Utc>) -> Timestamp {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reader rule of data-model.md §1: any RFC 3339 timestamp or a bare `YYYY-MM-DD` (midnight UTC).
pub fn canonical(s: &str) -> Option<Timestamp> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(format_ts(t.with_timezone(&Utc)));
    }
    parse_date_only(s)
}

fn parse_date_only(s: &str) -> Option<Timestamp> {
    if s.len() != 10 {
        return None;
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(format_ts(d.and_hms_opt(0, 0, 0)?.and_utc()))
}

/// Client-supplied dates (http-api.md §1.7): `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z`
/// or `±HH:MM`.
pub fn parse_client_date(s: &str) -> Option<Timestamp> {
    if let Some(t) = parse_date_only(s) {
        return Some(t);
    }
    let (body, offset_secs) = split_offset(s)?;
    let naive =
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"].iter().find_map(|f| NaiveDateTime::parse_from_str(body, f).ok())?;
    let utc = naive.and_utc() - chrono::Duration::seconds(offset_secs);
    Some(format_ts(utc))
}

fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(body) = s.strip_suffix('Z') {
        return Some((body, 0));
    }
    if s.len() < 6 {
        return None;
    }
    let (body, off) = s.split_at(s.len() - 6);
    let bytes = off.as_bytes();
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if bytes[3] != b':' {
        return None;
    }
    let h: i64 = off[1..3].parse().ok()?;
    let m: i64 = off[4..6].parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    Some((body, sign * (h * 3600 + m * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_only_becomes_midnight_utc() {
        assert_eq!(canonical("2025-11-30").unwrap(), "2025-11-30T00:00:00.000Z");
        assert_eq!(parse_client_date("2025-11-30").unwrap(), "2025-11-30T00:00:00.000Z");
    }

    #[test]
    fn offsets_and_fractions_are_normalised() {
        assert_eq!(parse_client_date("2025-10-30T10:00+02:00").unwrap(), "2025-10-30T08:00:00.000Z");
        assert_eq!(parse_client_date("2025-10-30T10:00:01.2345Z").unwrap(), "2025-10-30T10:00:01.234Z");
        assert!(parse_client_date("2025-10-30T10:00").is_none());
        assert!(parse_client_date("tomorrow").is_none());
        assert!(parse_client_date("2025-13-01").is_none());
    }
}
