//! The Danish calendar day of an instant.
//!
//! "Only one consultation/hold per calendar day" counts Danish days (Europe/Copenhagen), not UTC
//! days: a consultation at 00:30 Danish summer time is 22:30 UTC the day before. Instants are
//! stored as UTC; this module is the one place where they become Danish dates.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The time zone whose calendar decides billing days.
pub const DANISH_TIME_ZONE: Tz = chrono_tz::Europe::Copenhagen;

/// The Danish calendar date (Europe/Copenhagen) at `instant`.
///
/// Correct across both daylight-saving changes: 2026-10-24T22:30Z is 00:30 on 2026-10-25 in
/// Denmark (summer time, UTC+2), and 2026-03-28T23:30Z is 00:30 on 2026-03-29 (winter time,
/// UTC+1).
///
/// The tz data (chrono-tz) has transitions through 2099, which a property test checks against a
/// hand-written EU summer-time rule from 1990 on; from 2100 on chrono-tz knows no summer time.
///
/// At the very ends of chrono's range, where the local time would not be representable, the date
/// saturates to [`NaiveDate::MAX`] / [`NaiveDate::MIN`] instead of panicking.
pub fn danish_day(instant: DateTime<Utc>) -> NaiveDate {
    let utc = instant.naive_utc();
    let offset = DANISH_TIME_ZONE.offset_from_utc_datetime(&utc).fix();
    utc.checked_add_offset(offset)
        .map(|local| local.date())
        .unwrap_or(if offset.local_minus_utc() > 0 {
            NaiveDate::MAX
        } else {
            NaiveDate::MIN
        })
}

/// The UTC instants where the Danish day `day` starts (inclusive) and ends (exclusive), for
/// "everything on this day" queries: an instant `t` has `danish_day(t) == day` exactly when
/// `start <= t && t < end`.
///
/// Most days are 24 hours; the day summer time starts (last Sunday of March, e.g. 2026-03-29) is
/// 23 hours and the day it ends (last Sunday of October, e.g. 2026-10-25) is 25 hours. At the
/// very ends of chrono's date range, where a bound cannot be represented, it saturates to
/// [`DateTime::<Utc>::MIN_UTC`] / [`DateTime::<Utc>::MAX_UTC`].
pub fn day_bounds_utc(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day_start_utc(day).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let end = day
        .succ_opt()
        .and_then(day_start_utc)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (start, end)
}

/// The first instant whose Danish date is `day`, or `None` where chrono cannot represent it.
fn day_start_utc(day: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = day.and_time(NaiveTime::MIN);
    match DANISH_TIME_ZONE.from_local_datetime(&midnight) {
        LocalResult::Single(start) => Some(start.with_timezone(&Utc)),
        // Clocks turned back across midnight: the day starts at the first midnight.
        LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
        // Clocks jumped forward at midnight: the day starts at the jump, which is midnight on the
        // clock in force before it. Current tz data has one such day for Europe/Copenhagen
        // (a link to Europe/Berlin): 1893-04-01, local mean time → CET.
        LocalResult::None => {
            let before = midnight.checked_sub_signed(chrono::TimeDelta::days(1))?;
            let offset_before = DANISH_TIME_ZONE
                .offset_from_local_datetime(&before)
                .earliest()?
                .fix();
            offset_before
                .from_local_datetime(&midnight)
                .single()
                .map(|start| start.with_timezone(&Utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn october_dst_change_day() {
        // Summer time, UTC+2: 22:30Z is already 00:30 the next day.
        assert_eq!(danish_day(utc("2026-10-24T22:30:00Z")), date("2026-10-25"));
        assert_eq!(danish_day(utc("2026-10-24T21:59:59Z")), date("2026-10-24"));
        assert_eq!(danish_day(utc("2026-10-24T22:00:00Z")), date("2026-10-25"));
        // Winter time from 01:00Z on the 25th, UTC+1: 22:59Z is still the 25th, 23:00Z the 26th.
        assert_eq!(danish_day(utc("2026-10-25T22:59:59Z")), date("2026-10-25"));
        assert_eq!(danish_day(utc("2026-10-25T23:00:00Z")), date("2026-10-26"));
    }

    #[test]
    fn march_dst_change_day() {
        // Winter time, UTC+1: 23:30Z is 00:30 on the 29th.
        assert_eq!(danish_day(utc("2026-03-28T23:30:00Z")), date("2026-03-29"));
        assert_eq!(danish_day(utc("2026-03-28T22:59:59Z")), date("2026-03-28"));
        // Summer time from 01:00Z on the 29th, UTC+2: 21:59Z is the 29th, 22:00Z the 30th.
        assert_eq!(danish_day(utc("2026-03-29T21:59:59Z")), date("2026-03-29"));
        assert_eq!(danish_day(utc("2026-03-29T22:00:00Z")), date("2026-03-30"));
    }

    #[test]
    fn ordinary_winter_and_summer_midnights() {
        assert_eq!(danish_day(utc("2026-01-15T22:59:59Z")), date("2026-01-15"));
        assert_eq!(danish_day(utc("2026-01-15T23:00:00Z")), date("2026-01-16"));
        assert_eq!(danish_day(utc("2026-07-01T21:59:59Z")), date("2026-07-01"));
        assert_eq!(danish_day(utc("2026-07-01T22:00:00Z")), date("2026-07-02"));
    }

    #[test]
    fn a_midnight_swallowed_by_a_clock_change_still_starts_the_day() {
        // 1893-04-01: local mean time (+0:53:28) → CET (+1:00) at midnight; local 00:00–00:06:32
        // never existed. The day starts at the jump.
        let day = date("1893-04-01");
        let midnight = day.and_time(NaiveTime::MIN);
        assert!(DANISH_TIME_ZONE
            .from_local_datetime(&midnight)
            .earliest()
            .is_none());
        let (start, _) = day_bounds_utc(day);
        assert_eq!(start, utc("1893-03-31T23:06:32Z"));
        assert_eq!(danish_day(start), day);
        assert_eq!(
            danish_day(start - TimeDelta::seconds(1)),
            date("1893-03-31")
        );
    }

    #[test]
    fn spring_day_is_23_hours() {
        let (start, end) = day_bounds_utc(date("2026-03-29"));
        assert_eq!(start, utc("2026-03-28T23:00:00Z"));
        assert_eq!(end, utc("2026-03-29T22:00:00Z"));
        assert_eq!(end - start, TimeDelta::hours(23));
    }

    #[test]
    fn autumn_day_is_25_hours() {
        let (start, end) = day_bounds_utc(date("2026-10-25"));
        assert_eq!(start, utc("2026-10-24T22:00:00Z"));
        assert_eq!(end, utc("2026-10-25T23:00:00Z"));
        assert_eq!(end - start, TimeDelta::hours(25));
    }

    #[test]
    fn ordinary_days_are_24_hours() {
        for day in [
            "2026-01-15",
            "2026-03-28",
            "2026-03-30",
            "2026-07-01",
            "2026-10-26",
        ] {
            let (start, end) = day_bounds_utc(date(day));
            assert_eq!(end - start, TimeDelta::hours(24), "{day}");
        }
    }

    #[test]
    fn bounds_agree_with_danish_day() {
        let mut day = date("2026-01-01");
        while day <= date("2027-01-01") {
            let (start, end) = day_bounds_utc(day);
            assert_eq!(danish_day(start), day);
            assert_eq!(danish_day(end - TimeDelta::nanoseconds(1)), day);
            assert_eq!(danish_day(end), day.succ_opt().unwrap());
            day = day.succ_opt().unwrap();
        }
    }

    #[test]
    fn every_day_since_1850_starts_where_its_date_begins() {
        // Covers every clock change in Danish history (1894 CMT → CET, the 1916 and 1940s summer
        // times, EU rules since 1980): the start bound is the first instant of the day.
        let mut day = date("1850-01-01");
        while day < date("2100-01-01") {
            let (start, end) = day_bounds_utc(day);
            assert_eq!(danish_day(start), day, "{day}");
            assert_eq!(
                danish_day(start - TimeDelta::nanoseconds(1)),
                day.pred_opt().unwrap(),
                "{day}"
            );
            assert!(end > start, "{day}");
            day = day.succ_opt().unwrap();
        }
    }

    #[test]
    fn extreme_dates_saturate_instead_of_panicking() {
        let (start, end) = day_bounds_utc(NaiveDate::MAX);
        assert!(start <= end);
        assert_eq!(end, DateTime::<Utc>::MAX_UTC);
        let (start, end) = day_bounds_utc(NaiveDate::MIN);
        assert!(start <= end);
        assert_eq!(danish_day(DateTime::<Utc>::MAX_UTC), NaiveDate::MAX);
        assert_eq!(danish_day(DateTime::<Utc>::MIN_UTC), NaiveDate::MIN);
    }
}
