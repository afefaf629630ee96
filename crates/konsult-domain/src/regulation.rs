//! The fee in force on a day: the fee table's level regulated by every step since.
//!
//! The agreements state every fee at the **October 2022 level** and regulate them every
//! **1 April and 1 October** (see `docs/domain.md`, "Fee levels", for the public steps and their
//! sources). A [`FeeSchedule`] is a [`FeeTable`] (the fees at their level, with service numbers and
//! validity periods) plus the [`Regulations`] recorded so far; [`FeeSchedule::price`] derives the
//! fee of a day and explains it ([`FeeReference`]).
//!
//! A regulation date after the fee's level with no recorded step makes the fee **unconfirmed**:
//! the derived fee is the best known one, but the line says so and can be re-priced when the
//! step is recorded. The fee is never silently stale.
//!
//! Rounding: each step is applied to the previous step's fee, rounded half up to whole øre, as
//! the official fee lists are.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::fees::{FeeTable, NoValidFee, MAX_FEE};
use crate::money::Money;
use crate::service::{ServiceKind, ServiceNumber, Speciale};

/// The price level the agreements state their fees at: October 2022.
pub const REFERENCE_LEVEL: NaiveDate = match NaiveDate::from_ymd_opt(2022, 10, 1) {
    Some(day) => day,
    None => NaiveDate::MIN,
};

/// The largest regulation a percentage step may give: ±20 %, in parts per million. Real steps are
/// a few percent; a larger number is a typing error.
pub const MAX_STEP_PPM: i64 = 200_000;

/// How a step changes the fees of its speciale.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepChange {
    /// Every fee of the speciale changes by this many parts per million (+1,06 % = 10 600).
    Percent {
        /// Parts per million, negative for a cut.
        ppm: i64,
    },
    /// The official amounts per service kind from this date (from the published fee list).
    Amounts {
        /// The fee of every kind of service, in øre.
        fees: BTreeMap<ServiceKind, Money>,
    },
}

impl StepChange {
    /// `+1,06 %`, `-0,84 %`, `+2,3 %`, or `officielle beløb` for amounts.
    pub fn danish(&self) -> String {
        match self {
            StepChange::Percent { ppm } => percent_text(*ppm, ','),
            StepChange::Amounts { .. } => "officielle beløb".to_owned(),
        }
    }

    /// `+1.06 %`, or `official amounts`.
    pub fn english(&self) -> String {
        match self {
            StepChange::Percent { ppm } => percent_text(*ppm, '.'),
            StepChange::Amounts { .. } => "official amounts".to_owned(),
        }
    }

    /// The fee after this step, given the fee before it; `None` if an amounts step has no amount
    /// for the kind.
    fn apply(&self, kind: ServiceKind, before: Money) -> Option<Money> {
        match self {
            StepChange::Percent { ppm } => Some(regulate(before, *ppm)),
            StepChange::Amounts { fees } => fees.get(&kind).copied(),
        }
    }
}

/// `+1,06 %` with the given decimal separator and no trailing zeros (`+2,3 %`, `0 %`).
fn percent_text(ppm: i64, separator: char) -> String {
    // A zero step keeps its sign so that a reference reads `2023-10-01+0%`.
    let sign = if ppm < 0 { "-" } else { "+" };
    let magnitude = ppm.unsigned_abs();
    let whole = magnitude / 10_000;
    let fraction = format!("{:04}", magnitude % 10_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{sign}{whole} %")
    } else {
        format!("{sign}{whole}{separator}{fraction} %")
    }
}

/// Parses a percentage as a person writes it: `1,06`, `-0,84`, `+2.3`, `2,385 %`. At most four
/// decimals; within ±20 %. Returns parts per million.
pub fn parse_percent(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("not a percentage: {text:?} (write e.g. \"1,06\" or \"-0,84\", at most 4 decimals)")
    };
    let rest = text.trim().trim_end_matches('%').trim_end();
    let (negative, rest) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let (whole, fraction) = match rest.split_once([',', '.']) {
        Some((whole, fraction)) => (whole, fraction),
        None => (rest, ""),
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 3
        || !digits(whole)
        || fraction.len() > 4
        || !digits(fraction)
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<4}").parse().map_err(|_| bad())?;
    let ppm = whole * 10_000 + fraction;
    if ppm > MAX_STEP_PPM {
        return Err(format!(
            "{text:?} is more than 20 %: a regulation step is a few percent"
        ));
    }
    Ok(if negative { -ppm } else { ppm })
}

/// `fee × (1 + ppm/10⁶)`, rounded half up (away from zero) to whole øre.
pub fn regulate(fee: Money, ppm: i64) -> Money {
    let scaled = i128::from(fee.ore()) * i128::from(1_000_000 + ppm);
    let half = 500_000i128 * scaled.signum();
    let ore = (scaled + half) / 1_000_000;
    Money::from_ore(i64::try_from(ore).unwrap_or(i64::MAX))
}

/// One regulation of one speciale's fees from a date.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegulationStep {
    /// The speciale whose fees change.
    pub speciale: Speciale,
    /// The first Danish day of the new fees: a 1 April or 1 October.
    pub effective_from: NaiveDate,
    /// The change.
    pub change: StepChange,
    /// Where the figure comes from (the published fee list or agreement text).
    pub source: String,
}

/// One thing wrong with a regulation step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepProblem {
    /// Regulations take effect on 1 April and 1 October only.
    #[error("a regulation takes effect on 1 April or 1 October, not {0}")]
    NotARegulationDate(NaiveDate),
    /// The step is not after the reference level.
    #[error("{0} is not after the October 2022 reference level")]
    BeforeReferenceLevel(NaiveDate),
    /// Two steps for one speciale and date.
    #[error("speciale {speciale} already has a step on {date}")]
    Duplicate {
        /// The speciale.
        speciale: Speciale,
        /// The date.
        date: NaiveDate,
    },
    /// A percentage beyond ±20 %.
    #[error("a step of {} is beyond ±20 %", percent_text(*.0, ','))]
    PercentOutOfRange(i64),
    /// An amounts step that leaves out a kind of service.
    #[error("the official amounts must give a fee for {0}")]
    MissingAmount(ServiceKind),
    /// An amount of 0 kr or less, or above 400 kr.
    #[error("an official amount must be above 0 kr and at most 400,00 kr, is {0}")]
    AmountOutOfRange(Money),
    /// No source given.
    #[error("say where the figure comes from (the published fee list)")]
    NoSource,
}

impl RegulationStep {
    /// Every problem with the step on its own (duplicates are checked by [`Regulations::new`]).
    pub fn problems(&self) -> Vec<StepProblem> {
        let mut problems = Vec::new();
        let date = self.effective_from;
        if date.day() != 1 || !matches!(date.month(), 4 | 10) {
            problems.push(StepProblem::NotARegulationDate(date));
        }
        if date <= REFERENCE_LEVEL {
            problems.push(StepProblem::BeforeReferenceLevel(date));
        }
        match &self.change {
            StepChange::Percent { ppm } => {
                if ppm.abs() > MAX_STEP_PPM {
                    problems.push(StepProblem::PercentOutOfRange(*ppm));
                }
            }
            StepChange::Amounts { fees } => {
                for kind in ServiceKind::ALL {
                    match fees.get(&kind) {
                        None => problems.push(StepProblem::MissingAmount(kind)),
                        Some(fee) if !fee.is_positive() || *fee > MAX_FEE => {
                            problems.push(StepProblem::AmountOutOfRange(*fee));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if self.source.trim().is_empty() {
            problems.push(StepProblem::NoSource);
        }
        problems
    }
}

/// A valid set of regulation steps: each on a regulation date after the reference level, at most
/// one per speciale and date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Regulations {
    steps: Vec<RegulationStep>,
}

impl Regulations {
    /// Validates `steps`, reporting every problem.
    pub fn new(mut steps: Vec<RegulationStep>) -> Result<Regulations, Vec<StepProblem>> {
        let mut problems: Vec<StepProblem> = steps.iter().flat_map(|s| s.problems()).collect();
        steps.sort_by_key(|s| (s.speciale, s.effective_from));
        for pair in steps.windows(2) {
            if pair[0].speciale == pair[1].speciale
                && pair[0].effective_from == pair[1].effective_from
            {
                problems.push(StepProblem::Duplicate {
                    speciale: pair[0].speciale,
                    date: pair[0].effective_from,
                });
            }
        }
        if problems.is_empty() {
            Ok(Regulations { steps })
        } else {
            Err(problems)
        }
    }

    /// The steps that are public (cited in `docs/domain.md`, "Fee levels"): speciale 51
    /// +1,06 % on 2023-04-01 and +2,77 % on 2024-04-01; speciale 62 −0,84 % on 2023-04-01 and
    /// +2,3 % on 2024-04-01.
    pub fn published() -> Regulations {
        let step = |speciale, (y, m), ppm, source: &str| RegulationStep {
            speciale,
            effective_from: NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX),
            change: StepChange::Percent { ppm },
            source: source.to_owned(),
        };
        use Speciale::{Almen, Vederlagsfri};
        let mut steps = vec![
            step(Almen, (2023, 4), 10_600, PUBLISHED_51),
            step(Almen, (2024, 4), 27_700, PUBLISHED_51),
            step(Vederlagsfri, (2023, 4), -8_400, PUBLISHED_62),
            step(Vederlagsfri, (2024, 4), 23_000, PUBLISHED_62),
        ];
        steps.sort_by_key(|s| (s.speciale, s.effective_from));
        Regulations { steps }
    }

    /// These steps plus `more` (e.g. the clinic's recorded steps on top of the published ones).
    pub fn with(&self, more: Vec<RegulationStep>) -> Result<Regulations, Vec<StepProblem>> {
        let mut steps = self.steps.clone();
        steps.extend(more);
        Regulations::new(steps)
    }

    /// The steps, by speciale and date.
    pub fn steps(&self) -> &[RegulationStep] {
        &self.steps
    }

    /// The step of `speciale` on `date`, if recorded.
    pub fn step(&self, speciale: Speciale, date: NaiveDate) -> Option<&RegulationStep> {
        self.steps
            .iter()
            .find(|s| s.speciale == speciale && s.effective_from == date)
    }
}

const PUBLISHED_51: &str = "Overenskomst om fysioterapi: regulering af honorarer, speciale 51 \
    (docs/domain.md, Fee levels)";
const PUBLISHED_62: &str = "Overenskomst om vederlagsfri fysioterapi: regulering af honorarer \
    efter modregning af rammeoverskridelse, speciale 62 (docs/domain.md, Fee levels)";

/// Every regulation date (1 April, 1 October) `d` with `after < d <= up_to`.
pub fn regulation_dates(after: NaiveDate, up_to: NaiveDate) -> Vec<NaiveDate> {
    let mut dates = Vec::new();
    for year in after.year()..=up_to.year() {
        for month in [4, 10] {
            if let Some(date) = NaiveDate::from_ymd_opt(year, month, 1) {
                if after < date && date <= up_to {
                    dates.push(date);
                }
            }
        }
    }
    dates
}

/// A step applied to a fee.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppliedStep {
    /// The step's date.
    pub effective_from: NaiveDate,
    /// The change.
    pub change: StepChange,
    /// The fee after the step.
    pub fee_after: Money,
}

/// How a fee was derived: the level it is stated at, the steps applied and the regulation dates
/// with no recorded step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeeReference {
    /// The fee at its level.
    pub level_fee: Money,
    /// The level's date (2022-10-01 for the agreement's level).
    pub level: NaiveDate,
    /// Steps applied, oldest first.
    pub applied: Vec<AppliedStep>,
    /// Regulation dates up to the day with no recorded step: the fee is unconfirmed.
    pub missing: Vec<NaiveDate>,
}

impl FeeReference {
    /// Whether a regulation date up to the day has no recorded step.
    pub fn unconfirmed(&self) -> bool {
        !self.missing.is_empty()
    }

    /// The compact reference carried on a billing line and in exports:
    /// `30795@2022-10-01;2023-04-01+1.06%;2024-04-01+2.77%`, then `;unconfirmed:2024-10-01,…`
    /// when steps are missing. An amounts step reads `2025-04-01=31983`.
    pub fn code(&self) -> String {
        let mut out = format!("{}@{}", self.level_fee.ore(), self.level);
        for step in &self.applied {
            match &step.change {
                StepChange::Percent { ppm } => out.push_str(&format!(
                    ";{}{}",
                    step.effective_from,
                    percent_text(*ppm, '.').replace(' ', "")
                )),
                StepChange::Amounts { .. } => out.push_str(&format!(
                    ";{}={}",
                    step.effective_from,
                    step.fee_after.ore()
                )),
            }
        }
        if self.unconfirmed() {
            let missing: Vec<String> = self.missing.iter().map(|d| d.to_string()).collect();
            out.push_str(&format!(";unconfirmed:{}", missing.join(",")));
        }
        out
    }

    /// `307,95 kr oktober 2022-niveau, reguleret 1.04.2023 +1,06 % = 311,21 kr, 1.04.2024
    /// +2,77 % = 319,83 kr` and, if unconfirmed, `; ikke bekræftet: regulering 1.10.2024 er ikke
    /// registreret`.
    pub fn danish(&self) -> String {
        let mut out = format!("{} {}", self.level_fee, danish_level(self.level));
        for (i, step) in self.applied.iter().enumerate() {
            out.push_str(if i == 0 { ", reguleret " } else { ", " });
            out.push_str(&format!(
                "{} {} = {}",
                danish_date(step.effective_from),
                step.change.danish(),
                step.fee_after
            ));
        }
        if self.unconfirmed() {
            let dates: Vec<String> = self.missing.iter().map(|d| danish_date(*d)).collect();
            out.push_str(&format!(
                "; ikke bekræftet: regulering {} er ikke registreret",
                dates.join(", ")
            ));
        }
        out
    }

    /// The same in English.
    pub fn english(&self) -> String {
        let mut out = format!("{} at the {} level", self.level_fee, self.level);
        for (i, step) in self.applied.iter().enumerate() {
            out.push_str(if i == 0 { ", regulated " } else { ", " });
            out.push_str(&format!(
                "{} {} = {}",
                step.effective_from,
                step.change.english(),
                step.fee_after
            ));
        }
        if self.unconfirmed() {
            let dates: Vec<String> = self.missing.iter().map(|d| d.to_string()).collect();
            out.push_str(&format!(
                "; unconfirmed: no step recorded for {}",
                dates.join(", ")
            ));
        }
        out
    }
}

fn danish_date(day: NaiveDate) -> String {
    format!("{}.{:02}.{}", day.day(), day.month(), day.year())
}

fn danish_level(level: NaiveDate) -> String {
    const MONTHS: [&str; 12] = [
        "januar",
        "februar",
        "marts",
        "april",
        "maj",
        "juni",
        "juli",
        "august",
        "september",
        "oktober",
        "november",
        "december",
    ];
    let month = MONTHS[level.month0() as usize];
    format!("{month} {}-niveau", level.year())
}

/// The fee of one service on one day, with how it was derived.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PricedFee {
    /// The service number valid on the day.
    pub service_number: ServiceNumber,
    /// The fee in force (the best known one if unconfirmed).
    pub fee: Money,
    /// How it was derived.
    pub reference: FeeReference,
}

/// Why no fee can be given for a service on a day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// No row of the table applies.
    #[error(transparent)]
    NoValidFee(#[from] NoValidFee),
    /// The regulated fee left the sane range (0 kr, 400 kr].
    #[error("the regulated fee {0} is outside 0–400 kr")]
    OutOfRange(Money),
}

/// A clinic's fee table with the regulation steps in force: what a service costs on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedule {
    table: FeeTable,
    regulations: Regulations,
}

impl FeeSchedule {
    /// The table regulated by `regulations`.
    pub fn new(table: FeeTable, regulations: Regulations) -> FeeSchedule {
        FeeSchedule { table, regulations }
    }

    /// The shipped table with the published steps.
    pub fn published() -> FeeSchedule {
        FeeSchedule::new(FeeTable::default_table(), Regulations::published())
    }

    /// The fee table (fees at their level).
    pub fn table(&self) -> &FeeTable {
        &self.table
    }

    /// The steps.
    pub fn regulations(&self) -> &Regulations {
        &self.regulations
    }

    /// The fee of `kind` under `speciale` on the Danish day `day`: the row that applies, regulated
    /// by every step of the speciale after the row's level up to the day. Regulation dates in
    /// that span with no step are listed in the reference's `missing` (the fee is unconfirmed).
    pub fn price(
        &self,
        kind: ServiceKind,
        speciale: Speciale,
        day: NaiveDate,
    ) -> Result<PricedFee, PriceError> {
        let row = self.table.lookup(kind, speciale, day)?;
        let level = row.level();
        let mut fee = row.fee;
        let mut applied = Vec::new();
        let mut missing = Vec::new();
        for date in regulation_dates(level, day) {
            match self.regulations.step(speciale, date) {
                None => missing.push(date),
                Some(step) => {
                    fee = step.change.apply(kind, fee).ok_or(NoValidFee {
                        kind,
                        speciale,
                        day,
                    })?;
                    if !fee.is_positive() || fee > MAX_FEE {
                        return Err(PriceError::OutOfRange(fee));
                    }
                    applied.push(AppliedStep {
                        effective_from: date,
                        change: step.change.clone(),
                        fee_after: fee,
                    });
                }
            }
        }
        Ok(PricedFee {
            service_number: row.service_number,
            fee,
            reference: FeeReference {
                level_fee: row.fee,
                level,
                applied,
                missing,
            },
        })
    }

    /// The regulation dates up to `today` that lack a step for a speciale the table has fees
    /// for, from the earliest level in the table: what the dashboard lists as out of date.
    pub fn missing_steps(&self, today: NaiveDate) -> Vec<(Speciale, NaiveDate)> {
        let mut levels: BTreeMap<Speciale, NaiveDate> = BTreeMap::new();
        for row in self.table.rows() {
            if row.valid_until.is_none_or(|until| until > row.level()) {
                let level = levels.entry(row.speciale).or_insert(row.level());
                *level = (*level).min(row.level());
            }
        }
        let mut missing = Vec::new();
        for (speciale, level) in levels {
            for date in regulation_dates(level, today) {
                if self.regulations.step(speciale, date).is_none() {
                    missing.push((speciale, date));
                }
            }
        }
        missing
    }
}

impl fmt::Display for FeeReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn fee(schedule: &FeeSchedule, kind: ServiceKind, speciale: Speciale, day: &str) -> i64 {
        schedule.price(kind, speciale, date(day)).unwrap().fee.ore()
    }

    #[test]
    fn published_steps_give_the_public_fees() {
        use ServiceKind::{HoldVideo, IndividualVideo};
        use Speciale::{Almen, Vederlagsfri};
        let s = FeeSchedule::published();
        // Individual video (0131).
        assert_eq!(fee(&s, IndividualVideo, Almen, "2024-01-15"), 31121);
        assert_eq!(fee(&s, IndividualVideo, Almen, "2024-04-01"), 31983);
        assert_eq!(fee(&s, IndividualVideo, Vederlagsfri, "2024-03-31"), 32493);
        assert_eq!(fee(&s, IndividualVideo, Vederlagsfri, "2024-04-01"), 33240);
        // Hold video (0132).
        assert_eq!(fee(&s, HoldVideo, Almen, "2024-01-15"), 20137);
        assert_eq!(fee(&s, HoldVideo, Almen, "2026-01-15"), 20695);
        assert_eq!(fee(&s, HoldVideo, Vederlagsfri, "2024-01-15"), 22617);
        assert_eq!(fee(&s, HoldVideo, Vederlagsfri, "2026-01-15"), 23137);
    }

    #[test]
    fn explains_the_fee_and_says_when_it_is_unconfirmed() {
        let s = FeeSchedule::published();
        let priced = s
            .price(
                ServiceKind::IndividualVideo,
                Speciale::Almen,
                date("2024-06-01"),
            )
            .unwrap();
        assert_eq!(
            priced.reference.danish(),
            "307,95 kr oktober 2022-niveau, reguleret 1.04.2023 +1,06 % = 311,21 kr, \
             1.04.2024 +2,77 % = 319,83 kr; ikke bekræftet: regulering 1.10.2023 er ikke registreret"
        );
        assert_eq!(
            priced.reference.code(),
            "30795@2022-10-01;2023-04-01+1.06%;2024-04-01+2.77%;unconfirmed:2023-10-01"
        );
        // A January 2026 consultation: no longer billed at 307,95 kr, and flagged.
        let priced = s
            .price(
                ServiceKind::IndividualVideo,
                Speciale::Almen,
                date("2026-01-20"),
            )
            .unwrap();
        assert_eq!(priced.fee, Money::from_ore(31983));
        assert_eq!(
            priced.reference.missing,
            vec![
                date("2023-10-01"),
                date("2024-10-01"),
                date("2025-04-01"),
                date("2025-10-01")
            ]
        );
        assert!(priced.reference.english().contains("unconfirmed"));
    }

    #[test]
    fn recording_the_missing_steps_confirms_the_fee() {
        let mut more = Vec::new();
        for (d, ppm) in [("2023-10-01", 0), ("2024-10-01", 0), ("2025-04-01", 21_000)] {
            more.push(RegulationStep {
                speciale: Speciale::Almen,
                effective_from: date(d),
                change: StepChange::Percent { ppm },
                source: "test".into(),
            });
        }
        more.push(RegulationStep {
            speciale: Speciale::Almen,
            effective_from: date("2025-10-01"),
            change: StepChange::Amounts {
                fees: BTreeMap::from([
                    (ServiceKind::IndividualVideo, Money::from_ore(32700)),
                    (ServiceKind::HoldVideo, Money::from_ore(21200)),
                ]),
            },
            source: "official list".into(),
        });
        let s = FeeSchedule::new(
            FeeTable::default_table(),
            Regulations::published().with(more).unwrap(),
        );
        let priced = s
            .price(
                ServiceKind::IndividualVideo,
                Speciale::Almen,
                date("2025-06-01"),
            )
            .unwrap();
        // 319,83 × 1,021 = 326,546… → 326,55 kr.
        assert_eq!(priced.fee, Money::from_ore(32655));
        assert!(!priced.reference.unconfirmed());
        let priced = s
            .price(
                ServiceKind::IndividualVideo,
                Speciale::Almen,
                date("2026-01-20"),
            )
            .unwrap();
        assert_eq!(priced.fee, Money::from_ore(32700));
        assert!(!priced.reference.unconfirmed());
        assert!(priced.reference.code().ends_with(";2025-10-01=32700"));
        assert_eq!(
            s.missing_steps(date("2026-11-30")),
            vec![
                (Speciale::Almen, date("2026-04-01")),
                (Speciale::Almen, date("2026-10-01")),
                (Speciale::Vederlagsfri, date("2023-10-01")),
                (Speciale::Vederlagsfri, date("2024-10-01")),
                (Speciale::Vederlagsfri, date("2025-04-01")),
                (Speciale::Vederlagsfri, date("2025-10-01")),
                (Speciale::Vederlagsfri, date("2026-04-01")),
                (Speciale::Vederlagsfri, date("2026-10-01")),
            ]
        );
    }

    #[test]
    fn rounding_is_half_up_at_each_step() {
        assert_eq!(
            regulate(Money::from_ore(32768), -8_400),
            Money::from_ore(32493)
        );
        assert_eq!(regulate(Money::from_ore(200), 25_000), Money::from_ore(205));
        // 100 × 1.005 = 100.5 → 101 (half up).
        assert_eq!(regulate(Money::from_ore(100), 5_000), Money::from_ore(101));
        assert_eq!(regulate(Money::from_ore(100), -5_000), Money::from_ore(100));
    }

    #[test]
    fn bad_steps_are_refused_with_every_problem() {
        let step = RegulationStep {
            speciale: Speciale::Almen,
            effective_from: date("2022-05-01"),
            change: StepChange::Percent { ppm: 900_000 },
            source: " ".into(),
        };
        assert_eq!(
            step.problems(),
            vec![
                StepProblem::NotARegulationDate(date("2022-05-01")),
                StepProblem::BeforeReferenceLevel(date("2022-05-01")),
                StepProblem::PercentOutOfRange(900_000),
                StepProblem::NoSource,
            ]
        );
        let duplicate = RegulationStep {
            speciale: Speciale::Almen,
            effective_from: date("2023-04-01"),
            change: StepChange::Percent { ppm: 0 },
            source: "x".into(),
        };
        assert_eq!(
            Regulations::published().with(vec![duplicate]),
            Err(vec![StepProblem::Duplicate {
                speciale: Speciale::Almen,
                date: date("2023-04-01")
            }])
        );
        let amounts = RegulationStep {
            speciale: Speciale::Almen,
            effective_from: date("2025-04-01"),
            change: StepChange::Amounts {
                fees: BTreeMap::from([(ServiceKind::IndividualVideo, Money::from_ore(900_000))]),
            },
            source: "x".into(),
        };
        assert_eq!(
            amounts.problems(),
            vec![
                StepProblem::AmountOutOfRange(Money::from_ore(900_000)),
                StepProblem::MissingAmount(ServiceKind::HoldVideo),
            ]
        );
    }

    #[test]
    fn percentages_parse_as_people_write_them() {
        assert_eq!(parse_percent("1,06"), Ok(10_600));
        assert_eq!(parse_percent("-0,84"), Ok(-8_400));
        assert_eq!(parse_percent("+2.3 %"), Ok(23_000));
        assert_eq!(parse_percent("2,385"), Ok(23_850));
        assert_eq!(parse_percent("0"), Ok(0));
        for bad in ["", "abc", "1,23456", "25", ",5", "1,2,3", "--1"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_text(10_600, ','), "+1,06 %");
        assert_eq!(percent_text(-8_400, ','), "-0,84 %");
        assert_eq!(percent_text(23_000, '.'), "+2.3 %");
        assert_eq!(percent_text(0, ','), "+0 %");
    }

    #[test]
    fn a_row_stated_at_a_later_level_takes_only_later_steps() {
        let mut row = FeeTable::default_table().rows()[0].clone();
        row.fee = Money::from_ore(31983);
        row.price_level = Some(date("2024-04-01"));
        let table = FeeTable::new(vec![row]).unwrap();
        let s = FeeSchedule::new(table, Regulations::published());
        let priced = s
            .price(
                ServiceKind::IndividualVideo,
                Speciale::Almen,
                date("2024-06-01"),
            )
            .unwrap();
        assert_eq!(priced.fee, Money::from_ore(31983));
        assert!(priced.reference.applied.is_empty());
        assert!(!priced.reference.unconfirmed());
    }
}
