//! Payer shares always add up to the fee, are never negative for a non-negative fee, and the
//! speciale 51 region share is 39.3 % rounded half up, checked against a plain statement of
//! that rounding rather than the same formula.

use konsult_domain::money::{shares, Money};
use konsult_domain::service::Speciale;
use proptest::prelude::*;

fn any_speciale() -> impl Strategy<Value = Speciale> {
    prop_oneof![Just(Speciale::Almen), Just(Speciale::Vederlagsfri)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn shares_sum_to_any_fee(ore in any::<i64>(), speciale in any_speciale()) {
        let split = shares(speciale, Money::from_ore(ore));
        prop_assert_eq!(
            i128::from(split.region.ore()) + i128::from(split.patient.ore()),
            i128::from(ore)
        );
        prop_assert_eq!(split.total(), Some(Money::from_ore(ore)));
    }

    #[test]
    fn shares_of_a_non_negative_fee_are_non_negative(
        ore in 0..=i64::MAX,
        speciale in any_speciale(),
    ) {
        let split = shares(speciale, Money::from_ore(ore));
        prop_assert!(split.region.ore() >= 0);
        prop_assert!(split.patient.ore() >= 0);
    }

    #[test]
    fn realistic_fees_split_as_documented(ore in 0i64..10_000_000) {
        // Region share r is 39.3 % of the fee rounded half up, r = ⌊x + ½⌋ for the exact
        // x = fee·393/1000: x lies in [r − ½, r + ½), i.e. 1000·r − 393·fee is in (−500, 500].
        let almen = shares(Speciale::Almen, Money::from_ore(ore));
        let scaled_error = 1000 * i128::from(almen.region.ore()) - 393 * i128::from(ore);
        prop_assert!(scaled_error > -500 && scaled_error <= 500, "fee {ore}: region {}", almen.region);
        prop_assert_eq!(almen.patient.ore(), ore - almen.region.ore());

        let vederlagsfri = shares(Speciale::Vederlagsfri, Money::from_ore(ore));
        prop_assert_eq!(vederlagsfri.region.ore(), ore);
        prop_assert_eq!(vederlagsfri.patient.ore(), 0);
    }

    #[test]
    fn corrections_mirror_the_original(ore in 0i64..10_000_000, speciale in any_speciale()) {
        let original = shares(speciale, Money::from_ore(ore));
        let correction = shares(speciale, Money::from_ore(-ore));
        prop_assert_eq!(correction.region.ore(), -original.region.ore());
        prop_assert_eq!(correction.patient.ore(), -original.patient.ore());
    }
}
