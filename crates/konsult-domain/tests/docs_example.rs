//! The fee-table example in `docs/domain.md` is a valid table, behaves as the text says, and is
//! exactly what `to_toml_string` writes for it (so the documented format is the download format).

use chrono::NaiveDate;
use konsult_domain::fees::FeeTable;
use konsult_domain::money::Money;
use konsult_domain::service::{ServiceKind, Speciale};

const DOMAIN_MD: &str = include_str!("../../../docs/domain.md");

fn toml_example() -> &'static str {
    let start = DOMAIN_MD
        .find("```toml\n")
        .expect("a toml block in docs/domain.md")
        + 8;
    let end = start + DOMAIN_MD[start..].find("```").expect("the block ends");
    &DOMAIN_MD[start..end]
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

#[test]
fn documented_example_parses_and_behaves_as_described() {
    let table = FeeTable::from_toml_str(toml_example()).unwrap();
    let on_2023 = table
        .lookup(
            ServiceKind::IndividualVideo,
            Speciale::Almen,
            date("2023-06-01"),
        )
        .unwrap();
    assert_eq!(on_2023.service_number.to_string(), "4531");
    assert_eq!(on_2023.fee, Money::from_ore(30795));
    let on_2025 = table
        .lookup(
            ServiceKind::IndividualVideo,
            Speciale::Almen,
            date("2025-04-01"),
        )
        .unwrap();
    assert_eq!(on_2025.service_number.to_string(), "0131");
    assert_eq!(on_2025.fee, Money::from_ore(31540));
    assert!(table
        .lookup(ServiceKind::HoldVideo, Speciale::Almen, date("2025-04-01"))
        .is_err());
}

#[test]
fn documented_example_is_the_download_format() {
    let table = FeeTable::from_toml_str(toml_example()).unwrap();
    assert_eq!(table.to_toml_string(), toml_example());
}
