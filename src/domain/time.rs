//! Timestamps are kept as canonical strings (`YYYY-MM-DDTHH:MM:SS.sssZ`): that is the only form the API and the
//! writers ever emit, and canonical strings of years 0000–9999 sort chronologically, so no parsed type is needed
//! in the hot path.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Timelike, Utc};

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

/// `to_rfc3339_opts(Millis, true)` written digit by digit: a task list of 50 formats about 100 timestamps per
/// response, and chrono's `fmt` machinery cost about 710 instructions each (9 % of a GET tasks under callgrind).
/// Years outside 0000–9999 (signed, wider) and leap seconds keep chrono's own rendering.
pub fn format_ts(t: DateTime<Utc>) -> Timestamp {
    // The fields are read from the naive UTC value: each accessor of `DateTime<Utc>` would first rebuild it.
    let n = t.naive_utc();
    let (year, nanos) = (n.year(), n.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, n.month());
    put(8, 2, n.day());
    put(11, 2, n.hour());
    put(14, 2, n.minute());
    put(17, 2, n.second());
    put(20, 3, nanos / 1_000_000);
    // Every byte written is an ASCII digit or one of the template's ASCII separators.
    String::from_utf8(b.to_vec()).expect("ASCII")
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
    let utc = naive.and_utc().checked_sub_signed(chrono::Duration::seconds(offset_secs))?;
    Some(format_ts(utc))
}

fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(body) = s.strip_suffix('Z') {
        return Some((body, 0));
    }
    if s.len() < 6 {
        return None;
    }
    // Client text: the last six bytes need not start on a character boundary.
    let (body, off) = s.split_at_checked(s.len() - 6)?;
    let bytes = off.as_bytes();
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if bytes[3] != b':' {
        return None;
    }
    let h: i64 = off.get(1..3)?.parse().ok()?;
    let m: i64 = off.get(4..6)?.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    Some((body, sign * (h * 3600 + m * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_ts_matches_chrono() {
        use chrono::TimeZone;
        let chrono_form = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut samples = vec![
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 0, 0).unwrap() + chrono::Duration::microseconds(1_999),
            NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc(),
        ];
        // xorshift over years -300..12000, to the microsecond
        let lo = Utc.with_ymd_and_hms(-300, 1, 1, 0, 0, 0).unwrap().timestamp_micros();
        let hi = Utc.with_ymd_and_hms(12000, 1, 1, 0, 0, 0).unwrap().timestamp_micros();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(DateTime::from_timestamp_micros(lo + (x % (hi - lo) as u64) as i64).unwrap());
        }
        for t in samples {
            assert_eq!(format_ts(t), chrono_form(t), "{t:?}");
        }
    }

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

    #[test]
    fn non_ascii_dates_are_refused_rather_than_panicking() {
        // Found by the schemathesis run: `split_at` in the middle of a multi-byte character panicked (500).
        for s in ["\u{f0b0}\u{92b3}ò\u{87}", "Ëp", "2025-10-30T10:00+é:00", "2025-10-30T10:00é00:00", "ééééééé"]
        {
            assert!(parse_client_date(s).is_none(), "{s}");
        }
    }
}
