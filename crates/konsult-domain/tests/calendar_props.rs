//! The Danish calendar day of any instant from 1990 through 2099 matches an independent
//! reference: the EU summer-time rule written out by hand with plain integer date arithmetic (no
//! chrono, no tz database).
//!
//! The range ends with 2099 because chrono-tz's precomputed transitions do: from 2100 on it has
//! no summer time (this test, run to 2100, fails on 2100-03-28T22:00Z). See `docs/domain.md`.

use chrono::{DateTime, Utc};
use konsult_domain::calendar::{danish_day, day_bounds_utc};
use proptest::prelude::*;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Day count of the last Sunday of a month with 31 days (March, September has 30, October).
fn last_sunday(year: i64, month: i64, days_in_month: i64) -> i64 {
    let last = days_from_civil(year, month, days_in_month);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday gives (days + 4) mod 7.
    let weekday = (last + 4).rem_euclid(7);
    last - weekday
}

/// Unix seconds of the EU summer-time start and end in `year`, both at 01:00 UTC: last Sunday
/// of March to last Sunday of October (1996 on), of September (1981–1995).
fn summer_time(year: i64) -> (i64, i64) {
    let start = last_sunday(year, 3, 31) * 86_400 + 3_600;
    let end = if year >= 1996 {
        last_sunday(year, 10, 31)
    } else {
        last_sunday(year, 9, 30)
    } * 86_400
        + 3_600;
    (start, end)
}

/// The Danish date at unix second `t` by the hand-written rule.
fn reference_day(t: i64) -> (i64, u32, u32) {
    let (year, _, _) = civil_from_days(t.div_euclid(86_400));
    let (start, end) = summer_time(year);
    let offset = if start <= t && t < end { 7_200 } else { 3_600 };
    civil_from_days((t + offset).div_euclid(86_400))
}

fn check(t: i64) {
    let instant = DateTime::<Utc>::from_timestamp(t, 0).unwrap();
    let day = danish_day(instant);
    let expected = reference_day(t);
    assert_eq!(
        (
            i64::from(chrono::Datelike::year(&day)),
            chrono::Datelike::month(&day),
            chrono::Datelike::day(&day)
        ),
        expected,
        "instant {instant}"
    );
    let (start, end) = day_bounds_utc(day);
    assert!(
        start <= instant && instant < end,
        "{instant} outside {start}..{end}"
    );
}

const FROM_1990: i64 = 631_152_000; // 1990-01-01T00:00:00Z
const UNTIL_2100: i64 = 4_102_444_800; // 2100-01-01T00:00:00Z

#[test]
fn reference_knows_the_2026_changes() {
    // Sanity of the reference itself against the dates in the brief.
    let (start, end) = summer_time(2026);
    assert_eq!(civil_from_days(start / 86_400), (2026, 3, 29));
    assert_eq!(civil_from_days(end / 86_400), (2026, 10, 25));
    assert_eq!(reference_day(1_792_881_000), (2026, 10, 25)); // 2026-10-24T22:30:00Z
    assert_eq!(reference_day(1_774_740_600), (2026, 3, 29)); // 2026-03-28T23:30:00Z
}

#[test]
fn every_quarter_hour_around_every_change_1990_to_2099() {
    for year in 1990..=2099 {
        let (start, end) = summer_time(year);
        for change in [start, end] {
            // ±26 hours covers both midnights next to the change.
            let mut t = change - 26 * 3_600;
            while t <= change + 26 * 3_600 {
                check(t);
                check(t - 1);
                t += 900;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn any_instant_1990_to_2099_matches_the_reference(t in FROM_1990..UNTIL_2100) {
        check(t);
    }
}
