//! The service catalogue and fee table: which service number and fee apply to a kind of video
//! service under a speciale on a given Danish calendar day.
//!
//! Fees are regulated every 1 April and 1 October, speciale 62 can get collective cuts, and
//! service numbers change between agreements (4531 → 0131 on 2024-01-01), so all of it is data
//! with validity periods. A clinic can load its own table (TOML or JSON, format in
//! `docs/domain.md`) without a release; [`FeeTable::default_table`] ships the 2024 agreements at
//! the October 2022 level.
//!
//! A [`FeeTable`] can only exist validated: for each (kind, speciale) the rows form one
//! contiguous history without overlaps or gaps, every fee is positive and every period
//! non-empty. Validation reports every problem at once, each naming its rows.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::money::Money;
use crate::service::{ServiceKind, ServiceNumber, Speciale};

/// One row of the fee table: the service number and fee of one kind of service under one
/// speciale for a period of Danish calendar days.
///
/// In files and JSON the fee is the integer field `fee_ore` (øre; 30795 = 307,95 kr).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRow {
    /// Individual or group (hold) video.
    pub kind: ServiceKind,
    /// The service number to bill under in this period, e.g. `0131`.
    pub service_number: ServiceNumber,
    /// The speciale the fee applies to.
    pub speciale: Speciale,
    /// First Danish day the row applies (inclusive).
    pub valid_from: NaiveDate,
    /// First Danish day the row no longer applies (exclusive); `None` = until further notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<NaiveDate>,
    /// The fee per consultation, at the row's price level.
    #[serde(rename = "fee_ore")]
    pub fee: Money,
    /// The price level the fee is stated at: regulation steps dated after it apply on top
    /// (see [`crate::regulation`]). `None` = the agreement's October 2022 level
    /// ([`crate::regulation::REFERENCE_LEVEL`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_level: Option<NaiveDate>,
}

/// The highest fee a row or a regulated fee may have: 400 kr. The agreement's video fees are
/// around 200–330 kr; anything above is a typing error, never a fee to bill.
pub const MAX_FEE: Money = Money::from_ore(40_000);

impl FeeRow {
    /// The level the fee is stated at; regulation steps after it apply.
    pub fn level(&self) -> NaiveDate {
        self.price_level
            .unwrap_or(crate::regulation::REFERENCE_LEVEL)
    }

    /// Whether the row applies on `day`: `valid_from <= day < valid_until`.
    pub fn applies_on(&self, day: NaiveDate) -> bool {
        self.valid_from <= day && self.valid_until.is_none_or(|until| day < until)
    }

    fn overlaps(&self, other: &FeeRow) -> bool {
        let self_ends_after_other_starts = self.valid_until.is_none_or(|u| u > other.valid_from);
        let other_ends_after_self_starts = other.valid_until.is_none_or(|u| u > self.valid_from);
        self_ends_after_other_starts && other_ends_after_self_starts
    }
}

/// Names a row in a validation problem: its 1-based position in the file (as a person counts
/// rows) and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowRef {
    /// 1-based position of the row in the table or file.
    pub row: usize,
    /// The row's service kind.
    pub kind: ServiceKind,
    /// The row's service number.
    pub service_number: ServiceNumber,
    /// The row's speciale.
    pub speciale: Speciale,
    /// The row's first day.
    pub valid_from: NaiveDate,
    /// The row's exclusive end, if any.
    pub valid_until: Option<NaiveDate>,
}

impl RowRef {
    fn new(row: usize, fee_row: &FeeRow) -> Self {
        RowRef {
            row,
            kind: fee_row.kind,
            service_number: fee_row.service_number,
            speciale: fee_row.speciale,
            valid_from: fee_row.valid_from,
            valid_until: fee_row.valid_until,
        }
    }
}

/// E.g. `row 2 (0131 individual_video sp. 51, 2024-01-01..2025-04-01)`; an open end is `..`.
impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "row {} ({} {} sp. {}, {}..",
            self.row, self.service_number, self.kind, self.speciale, self.valid_from
        )?;
        if let Some(until) = self.valid_until {
            write!(f, "{until}")?;
        }
        f.write_str(")")
    }
}

/// One thing wrong with a fee table. Row numbers are 1-based positions in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeTableProblem {
    /// The table has no rows, so no consultation could ever be billed.
    #[error("the table has no rows")]
    NoRows,
    /// The document's shape is wrong (e.g. `rows` is not a list).
    #[error("{message}")]
    Malformed {
        /// What is wrong.
        message: String,
    },
    /// A key at the top level other than `rows`.
    #[error("unknown top-level field {field:?} (only \"rows\" is allowed)")]
    UnknownTopLevelField {
        /// The key as written.
        field: String,
    },
    /// A row is not a table/object.
    #[error("row {row}: not a table of fields")]
    RowNotATable {
        /// 1-based row number.
        row: usize,
    },
    /// A required field is missing from a row.
    #[error("row {row}: missing field {field:?}")]
    MissingField {
        /// 1-based row number.
        row: usize,
        /// The missing field's name.
        field: &'static str,
    },
    /// A row has a field this format does not know (a typo such as `valid_untill`).
    #[error("row {row}: unknown field {field:?}")]
    UnknownField {
        /// 1-based row number.
        row: usize,
        /// The field as written.
        field: String,
    },
    /// A field's value cannot be read.
    #[error("row {row}: field {field:?}: {message}")]
    InvalidField {
        /// 1-based row number.
        row: usize,
        /// The field's name.
        field: &'static str,
        /// Why the value is not acceptable.
        message: String,
    },
    /// A speciale number that is neither 51 nor 62.
    #[error("row {row}: unknown speciale {code} (only 51 and 62 are known)")]
    UnknownSpeciale {
        /// 1-based row number.
        row: usize,
        /// The number as written.
        code: i64,
    },
    /// A fee of zero or less: a missing fee must never bill as 0 kr.
    #[error("{row}: the fee must be above 0 kr, is {fee}")]
    NonPositiveFee {
        /// The row.
        row: RowRef,
        /// The fee as given.
        fee: Money,
    },
    /// A fee above [`MAX_FEE`] (400 kr): a typing error, never a fee to bill.
    #[error("{row}: the fee must be at most 400,00 kr, is {fee}")]
    FeeAboveLimit {
        /// The row.
        row: RowRef,
        /// The fee as given.
        fee: Money,
    },
    /// `valid_until` is not after `valid_from`, so the row would apply on no day.
    #[error("{row}: valid_until must be after valid_from")]
    EmptyPeriod {
        /// The row.
        row: RowRef,
    },
    /// Two rows for the same kind and speciale apply on a common day.
    #[error("{first} and {second} overlap")]
    Overlap {
        /// The row that comes first in the file.
        first: RowRef,
        /// The row that comes later in the file.
        second: RowRef,
    },
    /// Days between two rows of one kind and speciale's history that no row covers.
    #[error("gap between {before} and {after}: no fee from {} to {}", .before.valid_until.map_or_else(String::new, |d| d.to_string()), .after.valid_from)]
    Gap {
        /// The row whose period ends first.
        before: RowRef,
        /// The next row, starting after the gap.
        after: RowRef,
    },
}

/// A fee table could not be read or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeTableError {
    /// The text is not valid TOML or JSON at all.
    #[error("the fee table is not valid {format}: {message}")]
    Syntax {
        /// `"TOML"` or `"JSON"`.
        format: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document parsed but its content is wrong; every problem found is listed.
    #[error("the fee table has {} problem(s): {}", .0.len(), join_problems(.0))]
    Invalid(Vec<FeeTableProblem>),
}

fn join_problems(problems: &[FeeTableProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl FeeTableError {
    /// The individual problems (empty for a syntax error).
    pub fn problems(&self) -> &[FeeTableProblem] {
        match self {
            FeeTableError::Syntax { .. } => &[],
            FeeTableError::Invalid(problems) => problems,
        }
    }
}

/// No row of the fee table applies to this kind, speciale and day. Never billed as 0 kr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("no fee for {kind} under speciale {speciale} is valid on {day}")]
pub struct NoValidFee {
    /// The service kind looked up.
    pub kind: ServiceKind,
    /// The speciale looked up.
    pub speciale: Speciale,
    /// The Danish day looked up.
    pub day: NaiveDate,
}

/// A validated fee table. Build with [`FeeTable::new`], [`FeeTable::from_toml_str`],
/// [`FeeTable::from_json_str`] or [`FeeTable::default_table`]; ask with [`FeeTable::lookup`];
/// write back with [`FeeTable::to_toml_string`] / [`FeeTable::to_json_string`].
///
/// Serde: serialises as `{"rows": [...]}` (the JSON file format); deserialising validates like
/// [`FeeTable::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FeeTableDocument")]
pub struct FeeTable {
    rows: Vec<FeeRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeeTableDocument {
    rows: Vec<FeeRow>,
}

impl TryFrom<FeeTableDocument> for FeeTable {
    type Error = FeeTableError;

    fn try_from(document: FeeTableDocument) -> Result<Self, Self::Error> {
        FeeTable::new(document.rows)
    }
}

/// Field names of a row in the file format.
const ROW_FIELDS: [&str; 7] = [
    "kind",
    "service_number",
    "speciale",
    "valid_from",
    "valid_until",
    "fee_ore",
    "price_level",
];

impl FeeTable {
    /// Validates `rows` into a table. Rejects, naming the rows (1-based, in the given order):
    /// no rows at all; fees of 0 kr or less; `valid_until <= valid_from`; two rows of the same
    /// kind and speciale that share a day; a day between two rows of the same kind and speciale
    /// that no row covers. All problems are collected, not just the first.
    ///
    /// Rows for different kinds or specialer are independent, and one kind and speciale may use
    /// different service numbers over time (4531 until 2024-01-01, then 0131).
    pub fn new(rows: Vec<FeeRow>) -> Result<FeeTable, FeeTableError> {
        let numbered: Vec<(usize, &FeeRow)> =
            rows.iter().enumerate().map(|(i, r)| (i + 1, r)).collect();
        let problems = validate(&numbered);
        if problems.is_empty() {
            Ok(FeeTable { rows })
        } else {
            Err(FeeTableError::Invalid(problems))
        }
    }

    /// Reads a table in the TOML file format (see `docs/domain.md`): `[[rows]]` tables with
    /// `kind`, `service_number`, `speciale`, `valid_from`, optional `valid_until` and `fee_ore`.
    /// Dates may be TOML dates (`2024-01-01`) or strings (`"2024-01-01"`).
    pub fn from_toml_str(text: &str) -> Result<FeeTable, FeeTableError> {
        let table: toml::Table = toml::from_str(text).map_err(|error| FeeTableError::Syntax {
            format: "TOML",
            message: error.to_string(),
        })?;
        Self::from_document(toml_to_json(toml::Value::Table(table)))
    }

    /// Reads a table in the JSON file format: `{"rows": [{...}, ...]}` with the same fields as
    /// the TOML format; dates are `"YYYY-MM-DD"` strings.
    pub fn from_json_str(text: &str) -> Result<FeeTable, FeeTableError> {
        let value: Value = serde_json::from_str(text).map_err(|error| FeeTableError::Syntax {
            format: "JSON",
            message: error.to_string(),
        })?;
        Self::from_document(value)
    }

    /// The table Konsult ships: the 2024 agreements' video services at the October 2022 level,
    /// from 2024-01-01 until further notice.
    ///
    /// | kind | number | sp. 51 | sp. 62 |
    /// |---|---|---|---|
    /// | individual video | 0131 | 307,95 kr | 327,68 kr |
    /// | hold (group) video | 0132 | 199,26 kr | 228,09 kr |
    pub fn default_table() -> FeeTable {
        let from = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or(NaiveDate::MIN);
        let row = |kind, service_number, speciale, ore| FeeRow {
            kind,
            service_number,
            speciale,
            valid_from: from,
            valid_until: None,
            fee: Money::from_ore(ore),
            price_level: None,
        };
        use ServiceKind::{HoldVideo, IndividualVideo};
        use Speciale::{Almen, Vederlagsfri};
        FeeTable {
            rows: vec![
                row(
                    IndividualVideo,
                    ServiceNumber::INDIVIDUAL_VIDEO_2024,
                    Almen,
                    30795,
                ),
                row(
                    IndividualVideo,
                    ServiceNumber::INDIVIDUAL_VIDEO_2024,
                    Vederlagsfri,
                    32768,
                ),
                row(HoldVideo, ServiceNumber::HOLD_VIDEO_2024, Almen, 19926),
                row(
                    HoldVideo,
                    ServiceNumber::HOLD_VIDEO_2024,
                    Vederlagsfri,
                    22809,
                ),
            ],
        }
    }

    /// The row that applies to `kind` under `speciale` on the Danish day `day`. No applicable
    /// row is an error, never a zero fee.
    pub fn lookup(
        &self,
        kind: ServiceKind,
        speciale: Speciale,
        day: NaiveDate,
    ) -> Result<&FeeRow, NoValidFee> {
        self.rows
            .iter()
            .find(|row| row.kind == kind && row.speciale == speciale && row.applies_on(day))
            .ok_or(NoValidFee {
                kind,
                speciale,
                day,
            })
    }

    /// The rows in the order they were given.
    pub fn rows(&self) -> &[FeeRow] {
        &self.rows
    }

    /// The table in the TOML file format, for an admin to download, edit and load again.
    /// Reading the output with [`FeeTable::from_toml_str`] gives the same table.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::from(
            "# Konsult fee table. Days are Danish calendar days; valid_from is inclusive,\n\
             # valid_until exclusive (left out = until further notice). fee_ore is in øre.\n",
        );
        for row in &self.rows {
            out.push_str("\n[[rows]]\n");
            out.push_str(&format!("kind = \"{}\"\n", row.kind.code()));
            out.push_str(&format!("service_number = \"{}\"\n", row.service_number));
            out.push_str(&format!("speciale = {}\n", row.speciale.code()));
            out.push_str(&format!("valid_from = {}\n", toml_date(row.valid_from)));
            if let Some(until) = row.valid_until {
                out.push_str(&format!("valid_until = {}\n", toml_date(until)));
            }
            out.push_str(&format!("fee_ore = {} # {}\n", row.fee.ore(), row.fee));
            if let Some(level) = row.price_level {
                out.push_str(&format!("price_level = {}\n", toml_date(level)));
            }
        }
        out
    }

    /// The table in the JSON file format (`{"rows": [...]}`, pretty-printed). Reading the output
    /// with [`FeeTable::from_json_str`] gives the same table.
    pub fn to_json_string(&self) -> String {
        let rows = self.rows.iter().map(row_to_json).collect();
        let mut document = Map::new();
        document.insert("rows".to_owned(), Value::Array(rows));
        format!("{:#}", Value::Object(document))
    }

    /// Reads the parsed document shared by the TOML and JSON formats, collecting every problem.
    fn from_document(document: Value) -> Result<FeeTable, FeeTableError> {
        let mut problems = Vec::new();
        let Value::Object(mut top) = document else {
            return Err(FeeTableError::Invalid(vec![FeeTableProblem::Malformed {
                message: "the document must be a table with a \"rows\" list".to_owned(),
            }]));
        };
        let rows_value = top.remove("rows");
        for field in top.keys() {
            problems.push(FeeTableProblem::UnknownTopLevelField {
                field: field.clone(),
            });
        }
        let raw_rows = match rows_value {
            Some(Value::Array(rows)) => rows,
            Some(_) => {
                problems.push(FeeTableProblem::Malformed {
                    message: "\"rows\" must be a list of tables".to_owned(),
                });
                return Err(FeeTableError::Invalid(problems));
            }
            None => Vec::new(),
        };

        let mut parsed: Vec<(usize, FeeRow)> = Vec::with_capacity(raw_rows.len());
        let mut all_rows_parsed = true;
        for (index, raw) in raw_rows.into_iter().enumerate() {
            match parse_row(index + 1, raw) {
                Ok(row) => parsed.push((index + 1, row)),
                Err(row_problems) => {
                    all_rows_parsed = false;
                    problems.extend(row_problems);
                }
            }
        }
        let numbered: Vec<(usize, &FeeRow)> = parsed.iter().map(|(n, r)| (*n, r)).collect();
        let mut checks = validate(&numbered);
        if !all_rows_parsed {
            // "No rows" would be false when rows exist but could not be read.
            checks.retain(|problem| *problem != FeeTableProblem::NoRows);
        }
        problems.extend(checks);

        if problems.is_empty() {
            Ok(FeeTable {
                rows: parsed.into_iter().map(|(_, row)| row).collect(),
            })
        } else {
            Err(FeeTableError::Invalid(problems))
        }
    }
}

/// Every problem with typed rows, each row given with its 1-based number.
fn validate(rows: &[(usize, &FeeRow)]) -> Vec<FeeTableProblem> {
    let mut problems = Vec::new();
    if rows.is_empty() {
        problems.push(FeeTableProblem::NoRows);
    }

    let mut histories: BTreeMap<(ServiceKind, Speciale), Vec<(usize, &FeeRow)>> = BTreeMap::new();
    for &(number, row) in rows {
        if !row.fee.is_positive() {
            problems.push(FeeTableProblem::NonPositiveFee {
                row: RowRef::new(number, row),
                fee: row.fee,
            });
        } else if row.fee > MAX_FEE {
            problems.push(FeeTableProblem::FeeAboveLimit {
                row: RowRef::new(number, row),
                fee: row.fee,
            });
        }
        if row.valid_until.is_some_and(|until| until <= row.valid_from) {
            problems.push(FeeTableProblem::EmptyPeriod {
                row: RowRef::new(number, row),
            });
        } else {
            histories
                .entry((row.kind, row.speciale))
                .or_default()
                .push((number, row));
        }
    }

    for history in histories.values_mut() {
        for (i, &(first_number, first)) in history.iter().enumerate() {
            for &(second_number, second) in &history[i + 1..] {
                if first.overlaps(second) {
                    problems.push(FeeTableProblem::Overlap {
                        first: RowRef::new(first_number, first),
                        second: RowRef::new(second_number, second),
                    });
                }
            }
        }

        // Walk the history by start date, keeping the row that reaches furthest; a row starting
        // after that reach leaves a gap.
        history.sort_by_key(|&(number, row)| (row.valid_from, number));
        let mut reach: Option<(usize, &FeeRow)> = None;
        for &(number, row) in history.iter() {
            if let Some((reach_number, reach_row)) = reach {
                let Some(reach_end) = reach_row.valid_until else {
                    break; // An open-ended row covers everything after it.
                };
                if row.valid_from > reach_end {
                    problems.push(FeeTableProblem::Gap {
                        before: RowRef::new(reach_number, reach_row),
                        after: RowRef::new(number, row),
                    });
                }
                let extends = row.valid_until.is_none_or(|end| end > reach_end);
                if extends {
                    reach = Some((number, row));
                }
            } else {
                reach = Some((number, row));
            }
        }
    }
    problems
}

/// Reads one row of the file format, or every problem with it.
fn parse_row(number: usize, raw: Value) -> Result<FeeRow, Vec<FeeTableProblem>> {
    let Value::Object(fields) = raw else {
        return Err(vec![FeeTableProblem::RowNotATable { row: number }]);
    };
    let mut problems = Vec::new();
    for field in fields.keys() {
        if !ROW_FIELDS.contains(&field.as_str()) {
            problems.push(FeeTableProblem::UnknownField {
                row: number,
                field: field.clone(),
            });
        }
    }
    let mut invalid = |field: &'static str, message: &str| {
        problems.push(FeeTableProblem::InvalidField {
            row: number,
            field,
            message: message.to_owned(),
        });
    };
    let mut missing = Vec::new();
    let mut required = |field: &'static str| {
        let value = fields.get(field).filter(|value| !value.is_null());
        if value.is_none() {
            missing.push(FeeTableProblem::MissingField { row: number, field });
        }
        value
    };

    let kind = required("kind").and_then(|value| {
        let parsed = value
            .as_str()
            .and_then(|text| text.parse::<ServiceKind>().ok());
        if parsed.is_none() {
            invalid("kind", "must be \"individual_video\" or \"hold_video\"");
        }
        parsed
    });
    let service_number = required("service_number").and_then(|value| {
        let parsed = value
            .as_str()
            .and_then(|text| ServiceNumber::parse(text).ok());
        if parsed.is_none() {
            invalid(
                "service_number",
                "must be a string of exactly four digits, e.g. \"0131\"",
            );
        }
        parsed
    });
    let mut unknown_speciale = None;
    let speciale = required("speciale").and_then(|value| match value.as_i64() {
        Some(code) => {
            let parsed = u16::try_from(code)
                .ok()
                .and_then(|code| Speciale::try_from(code).ok());
            if parsed.is_none() {
                unknown_speciale = Some(code);
            }
            parsed
        }
        None => {
            invalid("speciale", "must be the number 51 or 62");
            None
        }
    });
    let mut date = |field: &'static str, value: &Value| {
        let parsed = value
            .as_str()
            .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok());
        if parsed.is_none() {
            invalid(field, "must be a date written YYYY-MM-DD");
        }
        parsed
    };
    let valid_from = required("valid_from").and_then(|value| date("valid_from", value));
    let valid_until = match fields.get("valid_until").filter(|value| !value.is_null()) {
        None => Some(None),
        Some(value) => date("valid_until", value).map(Some),
    };
    let price_level = match fields.get("price_level").filter(|value| !value.is_null()) {
        None => Some(None),
        Some(value) => date("price_level", value).map(Some),
    };
    let fee = required("fee_ore").and_then(|value| {
        let parsed = value.as_i64().map(Money::from_ore);
        if parsed.is_none() {
            invalid(
                "fee_ore",
                "must be a whole number of øre, e.g. 30795 for 307,95 kr",
            );
        }
        parsed
    });

    problems.extend(missing);
    if let Some(code) = unknown_speciale {
        problems.push(FeeTableProblem::UnknownSpeciale { row: number, code });
    }
    match (
        kind,
        service_number,
        speciale,
        valid_from,
        valid_until,
        fee,
        price_level,
    ) {
        (
            Some(kind),
            Some(service_number),
            Some(speciale),
            Some(valid_from),
            Some(valid_until),
            Some(fee),
            Some(price_level),
        ) if problems.is_empty() => Ok(FeeRow {
            kind,
            service_number,
            speciale,
            valid_from,
            valid_until,
            fee,
            price_level,
        }),
        _ => {
            problems.sort_by_key(problem_field_order);
            Err(problems)
        }
    }
}

/// Orders a row's problems by the field they concern, as the fields appear in the format.
fn problem_field_order(problem: &FeeTableProblem) -> usize {
    let field = match problem {
        FeeTableProblem::MissingField { field, .. }
        | FeeTableProblem::InvalidField { field, .. } => *field,
        FeeTableProblem::UnknownSpeciale { .. } => "speciale",
        _ => "",
    };
    ROW_FIELDS
        .iter()
        .position(|known| *known == field)
        .unwrap_or(ROW_FIELDS.len())
}

fn row_to_json(row: &FeeRow) -> Value {
    let mut fields = Map::new();
    fields.insert("kind".to_owned(), Value::from(row.kind.code()));
    fields.insert(
        "service_number".to_owned(),
        Value::from(row.service_number.to_string()),
    );
    fields.insert("speciale".to_owned(), Value::from(row.speciale.code()));
    fields.insert(
        "valid_from".to_owned(),
        Value::from(row.valid_from.to_string()),
    );
    if let Some(until) = row.valid_until {
        fields.insert("valid_until".to_owned(), Value::from(until.to_string()));
    }
    fields.insert("fee_ore".to_owned(), Value::from(row.fee.ore()));
    if let Some(level) = row.price_level {
        fields.insert("price_level".to_owned(), Value::from(level.to_string()));
    }
    Value::Object(fields)
}

/// A date as TOML: a bare TOML date where TOML can write it (years 0000–9999), else a string.
fn toml_date(day: NaiveDate) -> String {
    if (0..=9999).contains(&day.year()) {
        day.format("%Y-%m-%d").to_string()
    } else {
        format!("\"{day}\"")
    }
}

/// Turns parsed TOML into the JSON value model, dates becoming their text, so both formats share
/// one reader.
fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text),
        toml::Value::Integer(number) => Value::from(number),
        toml::Value::Float(number) => serde_json::Number::from_f64(number)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(number.to_string())),
        toml::Value::Boolean(flag) => Value::Bool(flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(key, value)| (key, toml_to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn row(
        kind: ServiceKind,
        number: &str,
        speciale: Speciale,
        from: &str,
        until: Option<&str>,
        ore: i64,
    ) -> FeeRow {
        FeeRow {
            kind,
            service_number: ServiceNumber::parse(number).unwrap(),
            speciale,
            valid_from: date(from),
            valid_until: until.map(date),
            fee: Money::from_ore(ore),
            price_level: None,
        }
    }

    use ServiceKind::{HoldVideo, IndividualVideo};
    use Speciale::{Almen, Vederlagsfri};

    #[test]
    fn default_table_is_valid_and_has_the_oct_2022_fees() {
        let table = FeeTable::default_table();
        assert_eq!(FeeTable::new(table.rows().to_vec()), Ok(table.clone()));
        let day = date("2026-10-25");
        let cases = [
            (IndividualVideo, Almen, "0131", 30795),
            (IndividualVideo, Vederlagsfri, "0131", 32768),
            (HoldVideo, Almen, "0132", 19926),
            (HoldVideo, Vederlagsfri, "0132", 22809),
        ];
        for (kind, speciale, number, ore) in cases {
            let found = table.lookup(kind, speciale, day).unwrap();
            assert_eq!(found.service_number.to_string(), number);
            assert_eq!(found.fee, Money::from_ore(ore));
        }
    }

    #[test]
    fn lookup_before_the_default_table_starts_is_an_error_not_zero() {
        let table = FeeTable::default_table();
        assert_eq!(
            table.lookup(IndividualVideo, Almen, date("2023-12-31")),
            Err(NoValidFee {
                kind: IndividualVideo,
                speciale: Almen,
                day: date("2023-12-31")
            })
        );
        assert!(table
            .lookup(IndividualVideo, Almen, date("2024-01-01"))
            .is_ok());
    }

    fn clinic_table() -> FeeTable {
        FeeTable::new(vec![
            row(
                IndividualVideo,
                "4531",
                Almen,
                "2022-10-01",
                Some("2024-01-01"),
                30795,
            ),
            row(
                IndividualVideo,
                "0131",
                Almen,
                "2024-01-01",
                Some("2025-04-01"),
                30795,
            ),
            row(IndividualVideo, "0131", Almen, "2025-04-01", None, 31540),
            row(
                IndividualVideo,
                "0131",
                Vederlagsfri,
                "2024-01-01",
                None,
                32768,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn historical_4531_row_applies_before_2024() {
        let table = clinic_table();
        let found = table
            .lookup(IndividualVideo, Almen, date("2023-06-01"))
            .unwrap();
        assert_eq!(found.service_number, ServiceNumber::INDIVIDUAL_VIDEO_LEGACY);
        assert_eq!(found.fee, Money::from_ore(30795));
    }

    #[test]
    fn validity_boundaries_are_inclusive_from_exclusive_until() {
        let table = clinic_table();
        let on = |day| table.lookup(IndividualVideo, Almen, date(day)).unwrap();
        assert_eq!(on("2023-12-31").service_number.to_string(), "4531");
        assert_eq!(on("2024-01-01").service_number.to_string(), "0131");
        assert_eq!(on("2025-03-31").fee, Money::from_ore(30795));
        assert_eq!(on("2025-04-01").fee, Money::from_ore(31540));
        assert!(table
            .lookup(IndividualVideo, Almen, date("2022-09-30"))
            .is_err());
        // No hold rows in this table at all.
        assert!(table.lookup(HoldVideo, Almen, date("2024-06-01")).is_err());
        // Sp. 62 starts only in 2024.
        assert!(table
            .lookup(IndividualVideo, Vederlagsfri, date("2023-06-01"))
            .is_err());
    }

    #[test]
    fn empty_table_is_rejected() {
        assert_eq!(
            FeeTable::new(vec![]),
            Err(FeeTableError::Invalid(vec![FeeTableProblem::NoRows]))
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_rows() {
        let rows = vec![
            row(
                IndividualVideo,
                "0131",
                Almen,
                "2024-01-01",
                Some("2025-04-01"),
                30795,
            ),
            // 2: overlaps row 1 (starts before it ends).
            row(
                IndividualVideo,
                "0131",
                Almen,
                "2025-03-01",
                Some("2025-10-01"),
                31000,
            ),
            // 3: leaves a gap after row 2 (2025-10-01..2025-11-01).
            row(IndividualVideo, "0131", Almen, "2025-11-01", None, 31500),
            // 4: zero fee.
            row(IndividualVideo, "0131", Vederlagsfri, "2024-01-01", None, 0),
            // 5: negative fee and an empty period.
            row(
                HoldVideo,
                "0132",
                Almen,
                "2024-01-01",
                Some("2024-01-01"),
                -5,
            ),
        ];
        let err = FeeTable::new(rows.clone()).unwrap_err();
        let r = |n: usize| RowRef::new(n, &rows[n - 1]);
        assert_eq!(
            err.problems(),
            &[
                FeeTableProblem::NonPositiveFee {
                    row: r(4),
                    fee: Money::ZERO
                },
                FeeTableProblem::NonPositiveFee {
                    row: r(5),
                    fee: Money::from_ore(-5)
                },
                FeeTableProblem::EmptyPeriod { row: r(5) },
                FeeTableProblem::Overlap {
                    first: r(1),
                    second: r(2)
                },
                FeeTableProblem::Gap {
                    before: r(2),
                    after: r(3)
                },
            ]
        );
        let message = err.to_string();
        assert!(
            message.starts_with("the fee table has 5 problem(s)"),
            "{message}"
        );
        assert!(
            message.contains(
                "row 1 (0131 individual_video sp. 51, 2024-01-01..2025-04-01) and \
                 row 2 (0131 individual_video sp. 51, 2025-03-01..2025-10-01) overlap"
            ),
            "{message}"
        );
        assert!(
            message.contains("no fee from 2025-10-01 to 2025-11-01"),
            "{message}"
        );
        assert!(
            message.contains("row 4 (0131 individual_video sp. 62, 2024-01-01..): the fee must be above 0 kr, is 0,00 kr"),
            "{message}"
        );
    }

    #[test]
    fn two_open_ended_rows_overlap() {
        let rows = vec![
            row(IndividualVideo, "0131", Almen, "2024-01-01", None, 30795),
            row(IndividualVideo, "0131", Almen, "2025-04-01", None, 31540),
        ];
        let err = FeeTable::new(rows.clone()).unwrap_err();
        assert_eq!(
            err.problems(),
            &[FeeTableProblem::Overlap {
                first: RowRef::new(1, &rows[0]),
                second: RowRef::new(2, &rows[1])
            }]
        );
    }

    #[test]
    fn different_kinds_and_specialer_are_independent_histories() {
        // Same dates, different (kind, speciale): neither overlap nor gap.
        let rows = vec![
            row(IndividualVideo, "0131", Almen, "2024-01-01", None, 30795),
            row(
                IndividualVideo,
                "0131",
                Vederlagsfri,
                "2025-01-01",
                None,
                32768,
            ),
            row(HoldVideo, "0132", Almen, "2024-01-01", None, 19926),
        ];
        assert!(FeeTable::new(rows).is_ok());
    }

    #[test]
    fn row_order_does_not_matter() {
        let rows = vec![
            row(IndividualVideo, "0131", Almen, "2025-04-01", None, 31540),
            row(
                IndividualVideo,
                "4531",
                Almen,
                "2022-10-01",
                Some("2024-01-01"),
                30795,
            ),
            row(
                IndividualVideo,
                "0131",
                Almen,
                "2024-01-01",
                Some("2025-04-01"),
                30795,
            ),
        ];
        assert!(FeeTable::new(rows).is_ok());
    }

    const CLINIC_TOML: &str = r#"
# A clinic's own table: the older number as history, a newer level from 2025-04-01.
[[rows]]
kind = "individual_video"
service_number = "4531"
speciale = 51
valid_from = 2022-10-01
valid_until = 2024-01-01
fee_ore = 30795

[[rows]]
kind = "individual_video"
service_number = "0131"
speciale = 51
valid_from = 2024-01-01
valid_until = "2025-04-01"
fee_ore = 30795

[[rows]]
kind = "individual_video"
service_number = "0131"
speciale = 51
valid_from = 2025-04-01
fee_ore = 31540

[[rows]]
kind = "individual_video"
service_number = "0131"
speciale = 62
valid_from = 2024-01-01
fee_ore = 32768
"#;

    #[test]
    fn reads_a_clinic_toml_table() {
        let table = FeeTable::from_toml_str(CLINIC_TOML).unwrap();
        assert_eq!(table, clinic_table());
        let found = table
            .lookup(IndividualVideo, Almen, date("2023-06-01"))
            .unwrap();
        assert_eq!(found.service_number.to_string(), "4531");
    }

    #[test]
    fn toml_and_json_round_trip() {
        for table in [FeeTable::default_table(), clinic_table()] {
            let toml_text = table.to_toml_string();
            assert_eq!(
                FeeTable::from_toml_str(&toml_text),
                Ok(table.clone()),
                "{toml_text}"
            );
            let json_text = table.to_json_string();
            assert_eq!(
                FeeTable::from_json_str(&json_text),
                Ok(table.clone()),
                "{json_text}"
            );
            // The serde form is the same JSON format.
            let via_serde: FeeTable = serde_json::from_str(&json_text).unwrap();
            assert_eq!(via_serde, table);
            assert_eq!(
                serde_json::to_value(&table).unwrap(),
                serde_json::from_str::<Value>(&json_text).unwrap()
            );
        }
    }

    #[test]
    fn toml_output_is_readable() {
        let text = FeeTable::default_table().to_toml_string();
        assert!(
            text.contains(
                "[[rows]]\nkind = \"individual_video\"\nservice_number = \"0131\"\nspeciale = 51\n\
             valid_from = 2024-01-01\nfee_ore = 30795 # 307,95 kr\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn unknown_speciale_in_toml_names_the_row_and_other_problems_too() {
        let text = r#"
[[rows]]
kind = "individual_video"
service_number = "0131"
speciale = 53
valid_from = 2024-01-01
fee_ore = 30795

[[rows]]
kind = "video"
service_number = 131
speciale = "51"
valid_from = "1. januar 2024"
valid_untill = 2025-01-01
fee_ore = 307.95

[[rows]]
kind = "hold_video"
speciale = 62
valid_from = 2024-01-01
fee_ore = -100
"#;
        let err = FeeTable::from_toml_str(text).unwrap_err();
        let problems = err.problems().to_vec();
        let field = |row, field: &'static str| {
            problems.iter().any(|p| {
                matches!(p, FeeTableProblem::InvalidField { row: r, field: f, .. } if *r == row && *f == field)
            })
        };
        assert!(problems.contains(&FeeTableProblem::UnknownSpeciale { row: 1, code: 53 }));
        assert!(field(2, "kind"));
        assert!(field(2, "service_number"));
        assert!(field(2, "speciale"));
        assert!(field(2, "valid_from"));
        assert!(field(2, "fee_ore"));
        assert!(problems.contains(&FeeTableProblem::UnknownField {
            row: 2,
            field: "valid_untill".to_owned()
        }));
        assert!(problems.contains(&FeeTableProblem::MissingField {
            row: 3,
            field: "service_number"
        }));
        assert_eq!(problems.len(), 8, "{problems:#?}");
        let message = err.to_string();
        assert!(message.contains("row 1: unknown speciale 53"), "{message}");
        // Row 3 never parsed, so its negative fee is not checked yet; the rest is all there.
        assert!(!message.contains("no rows"), "{message}");
    }

    #[test]
    fn unparsed_rows_still_let_the_rest_be_checked() {
        let text = r#"
[[rows]]
kind = "individual_video"
service_number = "0131"
speciale = 53
valid_from = 2024-01-01
fee_ore = 30795

[[rows]]
kind = "individual_video"
service_number = "0131"
speciale = 51
valid_from = 2024-01-01
valid_until = 2023-01-01
fee_ore = 0
"#;
        let err = FeeTable::from_toml_str(text).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert_eq!(
            problems[0],
            FeeTableProblem::UnknownSpeciale { row: 1, code: 53 }
        );
        assert!(
            matches!(&problems[1], FeeTableProblem::NonPositiveFee { row, .. } if row.row == 2)
        );
        assert!(matches!(&problems[2], FeeTableProblem::EmptyPeriod { row } if row.row == 2));
    }

    #[test]
    fn syntax_errors_and_bad_shapes() {
        assert!(matches!(
            FeeTable::from_toml_str("[[rows]\n"),
            Err(FeeTableError::Syntax { format: "TOML", .. })
        ));
        assert!(matches!(
            FeeTable::from_json_str("{\"rows\": ["),
            Err(FeeTableError::Syntax { format: "JSON", .. })
        ));
        assert_eq!(
            FeeTable::from_json_str("[]").unwrap_err().problems(),
            &[FeeTableProblem::Malformed {
                message: "the document must be a table with a \"rows\" list".to_owned()
            }]
        );
        assert_eq!(
            FeeTable::from_json_str("{\"rows\": {}}")
                .unwrap_err()
                .problems(),
            &[FeeTableProblem::Malformed {
                message: "\"rows\" must be a list of tables".to_owned()
            }]
        );
        assert_eq!(
            FeeTable::from_json_str("{\"rows\": [1], \"extra\": true}")
                .unwrap_err()
                .problems(),
            &[
                FeeTableProblem::UnknownTopLevelField {
                    field: "extra".to_owned()
                },
                FeeTableProblem::RowNotATable { row: 1 }
            ]
        );
        assert_eq!(
            FeeTable::from_toml_str("").unwrap_err().problems(),
            &[FeeTableProblem::NoRows]
        );
    }

    #[test]
    fn serde_deserialise_validates() {
        let json = r#"{"rows": [{"kind": "individual_video", "service_number": "0131",
            "speciale": 51, "valid_from": "2024-01-01", "fee_ore": 0}]}"#;
        let err = serde_json::from_str::<FeeTable>(json).unwrap_err();
        assert!(
            err.to_string().contains("the fee must be above 0 kr"),
            "{err}"
        );
    }
}
