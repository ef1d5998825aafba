//! Timestamps in UTC, in the two formats this server writes:
//!
//! - RFC 3339 for the tick events, like JavaScript's `new Date().toISOString()`:
//!   `2026-11-23T16:39:34.123Z`;
//! - the HTTP date of the `Date` header (RFC 9110 §5.6.7): `Mon, 23 Nov 2026 16:39:34 GMT`.
//!
//! The standard library gives seconds since 1970; turning them into a calendar date is a little
//! arithmetic, done here so that no date crate is needed.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now() -> String {
    format_millis(millis_since_epoch())
}

/// The current time as an HTTP date, for the `Date` header.
pub fn http_date_now() -> String {
    http_date(millis_since_epoch() / 1000)
}

fn millis_since_epoch() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_millis() as u64
}

/// Formats seconds since 1970 as `Mon, 23 Nov 2026 16:39:34 GMT` ("IMF-fixdate", RFC 9110).
pub fn http_date(secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    let month = MONTHS[(month - 1) as usize];
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    format!("{weekday}, {day:02} {month} {year} {h:02}:{m:02}:{s:02} GMT")
}

/// Formats milliseconds since 1970-01-01T00:00:00Z (times before 1970 are not needed here).
pub fn format_millis(millis: u64) -> String {
    let (secs, ms) = (millis / 1000, millis % 1000);
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar.
///
/// The trick (Howard Hinnant's `civil_from_days`): count in 400-year "eras" of 146,097 days, and
/// start each year on March 1st so that the leap day is the last day of the year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let day_of_era = z % 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month index with March = 0
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_1970_01_01() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn known_instants_match_javascripts_to_iso_string() {
        // Values checked against `new Date(ms).toISOString()` in Node.
        assert_eq!(format_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_millis(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(format_millis(1_795_451_974_123), "2026-11-23T16:39:34.123Z");
        assert_eq!(format_millis(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn http_dates_have_weekday_day_month_year_and_gmt() {
        // RFC 9110's own example, and two checked with Node's `new Date(ms).toUTCString()`.
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_795_451_974), "Mon, 23 Nov 2026 16:39:34 GMT");
    }

    #[test]
    fn now_has_the_rfc_3339_shape() {
        let t = now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
