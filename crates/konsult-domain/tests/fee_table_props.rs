//! Fee-table validation: any contiguous table, in any row order, is accepted and looked up
//! correctly at every boundary; an injected overlap or gap is the one problem reported, naming
//! exactly the two rows involved; and accepted tables survive a TOML and JSON round trip.

use chrono::{NaiveDate, TimeDelta};
use konsult_domain::fees::{FeeRow, FeeTable, FeeTableProblem};
use konsult_domain::money::Money;
use konsult_domain::service::{ServiceKind, ServiceNumber, Speciale};
use proptest::prelude::*;
use proptest::sample::Index;

const GROUPS: [(ServiceKind, Speciale, &str); 4] = [
    (ServiceKind::IndividualVideo, Speciale::Almen, "0131"),
    (ServiceKind::IndividualVideo, Speciale::Vederlagsfri, "0131"),
    (ServiceKind::HoldVideo, Speciale::Almen, "0132"),
    (ServiceKind::HoldVideo, Speciale::Vederlagsfri, "0132"),
];

/// One (kind, speciale)'s contiguous history: a start day, then (length in days, fee) per row,
/// and whether the last row is open-ended.
#[derive(Debug, Clone)]
struct History {
    start: NaiveDate,
    periods: Vec<(i64, i64)>,
    open_ended: bool,
}

impl History {
    fn rows(&self, group: usize) -> Vec<FeeRow> {
        let (kind, speciale, number) = GROUPS[group];
        let mut from = self.start;
        let mut rows = Vec::new();
        for (i, &(days, fee)) in self.periods.iter().enumerate() {
            let until = from + TimeDelta::days(days);
            let last = i + 1 == self.periods.len();
            rows.push(FeeRow {
                kind,
                service_number: ServiceNumber::parse(number).unwrap(),
                speciale,
                valid_from: from,
                valid_until: if last && self.open_ended {
                    None
                } else {
                    Some(until)
                },
                fee: Money::from_ore(fee),
                price_level: None,
            });
            from = until;
        }
        rows
    }
}

fn history() -> impl Strategy<Value = History> {
    (
        0i64..10_000,
        prop::collection::vec((1i64..400, 1i64..=40_000), 1..6),
        any::<bool>(),
    )
        .prop_map(|(offset, periods, open_ended)| History {
            start: NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + TimeDelta::days(offset),
            periods,
            open_ended,
        })
}

/// All four groups' rows in a shuffled file order. Returns the rows and, for each group, the
/// file positions (0-based) of its rows in history order.
fn table() -> impl Strategy<Value = (Vec<FeeRow>, Vec<Vec<usize>>)> {
    prop::collection::vec(history(), 4).prop_flat_map(|histories| {
        let ordered: Vec<(usize, usize, FeeRow)> = histories
            .iter()
            .enumerate()
            .flat_map(|(g, h)| {
                h.rows(g)
                    .into_iter()
                    .enumerate()
                    .map(move |(j, row)| (g, j, row))
            })
            .collect();
        Just(ordered).prop_shuffle().prop_map(|shuffled| {
            let mut positions: Vec<Vec<(usize, usize)>> = vec![Vec::new(); GROUPS.len()];
            for (position, (g, j, _)) in shuffled.iter().enumerate() {
                positions[*g].push((*j, position));
            }
            let positions = positions
                .into_iter()
                .map(|mut p| {
                    p.sort();
                    p.into_iter().map(|(_, position)| position).collect()
                })
                .collect();
            (
                shuffled.into_iter().map(|(_, _, row)| row).collect(),
                positions,
            )
        })
    })
}

/// Picks a group with at least two rows, starting the search at `pick`.
fn group_with_two_rows(positions: &[Vec<usize>], pick: Index) -> Option<usize> {
    let first = pick.index(positions.len());
    (0..positions.len())
        .map(|k| (first + k) % positions.len())
        .find(|&g| positions[g].len() >= 2)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn contiguous_tables_pass_and_look_up_at_every_boundary((rows, positions) in table()) {
        let table = FeeTable::new(rows.clone()).unwrap();
        for group in &positions {
            for (k, &position) in group.iter().enumerate() {
                let row = &rows[position];
                let on = |day| table.lookup(row.kind, row.speciale, day);
                prop_assert_eq!(on(row.valid_from), Ok(row));
                if let Some(until) = row.valid_until {
                    prop_assert_eq!(on(until - TimeDelta::days(1)), Ok(row));
                    if k + 1 == group.len() {
                        prop_assert!(on(until).is_err(), "lookup after the last row");
                    }
                }
                if k == 0 {
                    prop_assert!(on(row.valid_from - TimeDelta::days(1)).is_err());
                }
            }
        }
        prop_assert_eq!(FeeTable::from_toml_str(&table.to_toml_string()), Ok(table.clone()));
        prop_assert_eq!(FeeTable::from_json_str(&table.to_json_string()), Ok(table.clone()));
    }

    #[test]
    fn an_injected_overlap_is_named(
        (mut rows, positions) in table(),
        pick_group in any::<Index>(),
        pick_boundary in any::<Index>(),
        pick_days in any::<Index>(),
    ) {
        let group = group_with_two_rows(&positions, pick_group);
        prop_assume!(group.is_some());
        let group = &positions[group.unwrap()];
        let k = pick_boundary.index(group.len() - 1);
        let (earlier, later) = (group[k], group[k + 1]);
        // Extend the earlier row into the later one, but not past it.
        let later_days = rows[later]
            .valid_until
            .map_or(1_000, |until| (until - rows[later].valid_from).num_days());
        let extra = 1 + pick_days.index(later_days as usize) as i64;
        let until = rows[earlier].valid_until.unwrap();
        let extended = until + TimeDelta::days(extra);
        let extended = match rows[later].valid_until {
            Some(later_until) if extended > later_until => later_until,
            _ => extended,
        };
        rows[earlier].valid_until = Some(extended);

        let err = FeeTable::new(rows).unwrap_err();
        let problems = err.problems();
        prop_assert_eq!(problems.len(), 1, "{:?}", problems);
        let FeeTableProblem::Overlap { first, second } = &problems[0] else {
            panic!("expected an overlap, got {problems:?}");
        };
        let named = [first.row, second.row];
        let expected = [earlier.min(later) + 1, earlier.max(later) + 1];
        prop_assert_eq!(named, expected);
    }

    #[test]
    fn an_injected_gap_is_named(
        (mut rows, positions) in table(),
        pick_group in any::<Index>(),
        pick_boundary in any::<Index>(),
        pick_days in any::<Index>(),
    ) {
        let group = group_with_two_rows(&positions, pick_group);
        prop_assume!(group.is_some());
        let group = &positions[group.unwrap()];
        let k = pick_boundary.index(group.len() - 1);
        let (earlier, later) = (group[k], group[k + 1]);
        // Start the later row later, keeping its period non-empty.
        let room = rows[later]
            .valid_until
            .map_or(1_000, |until| (until - rows[later].valid_from).num_days() - 1);
        prop_assume!(room >= 1);
        let shift = 1 + pick_days.index(room as usize) as i64;
        rows[later].valid_from += TimeDelta::days(shift);

        let err = FeeTable::new(rows.clone()).unwrap_err();
        let problems = err.problems();
        prop_assert_eq!(problems.len(), 1, "{:?}", problems);
        let FeeTableProblem::Gap { before, after } = &problems[0] else {
            panic!("expected a gap, got {problems:?}");
        };
        prop_assert_eq!(before.row, earlier + 1);
        prop_assert_eq!(after.row, later + 1);
        // The message names the uncovered days.
        let message = err.to_string();
        let gap_from = rows[earlier].valid_until.unwrap();
        let gap_until = rows[later].valid_from;
        let expected = format!("no fee from {gap_from} to {gap_until}");
        prop_assert!(message.contains(&expected), "{}", message);
    }
}
