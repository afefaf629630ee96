//! `docs/compliance.md` maps each legal duty to the test that fails when
//! its feature breaks. These tests keep the map honest: every duty has a
//! row, every row names tests, and every test named exists and is not
//! ignored (so `./scripts/test` runs it). The DPA template covers each
//! point of GDPR art. 28(3).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of the table under `## Duties`: (duty cell, test cell).
fn duty_rows(text: &str) -> Vec<(String, String)> {
    let section = text
        .split("\n## Duties")
        .nth(1)
        .expect("a `## Duties` section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            // `\|` inside a cell is an escaped bar, not a column.
            let row = l.replace("\\|", "\u{1}");
            let cells: Vec<String> = row.split('|').map(|c| c.replace('\u{1}', "|")).collect();
            assert!(cells.len() >= 6, "a row with too few cells: {l}");
            (cells[1].trim().to_owned(), cells[4].trim().to_owned())
        })
        .collect()
}

/// The `file::name` references in backticks of a cell.
fn test_refs(cell: &str) -> Vec<(String, String)> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|r| {
            let (file, name) = r
                .split_once("::")
                .unwrap_or_else(|| panic!("{r:?} is not `file::test`"));
            (file.to_owned(), name.to_owned())
        })
        .collect()
}

/// Whether `file` defines the test `name`, not marked `#[ignore]`.
fn test_exists(file: &str, name: &str) -> Result<(), String> {
    let path = root().join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
    if file.ends_with(".rs") {
        let needle = format!("fn {name}(");
        let at = text
            .find(&needle)
            .ok_or_else(|| format!("{file} has no `fn {name}`"))?;
        let before: Vec<&str> = text[..at].lines().rev().take(4).collect();
        if before.iter().any(|l| l.contains("#[ignore")) {
            return Err(format!("{file}: {name} is ignored"));
        }
        Ok(())
    } else if file.ends_with(".js") {
        let found = [
            format!("test('{name}'"),
            format!("test(\"{name}\""),
            format!("test(`{name}`"),
        ]
        .iter()
        .any(|n| text.contains(n.as_str()));
        if found && !text.contains(&format!("test.skip('{name}'")) {
            Ok(())
        } else {
            Err(format!("{file} has no test titled {name:?}"))
        }
    } else {
        Err(format!("{file}: not a Rust or JavaScript test file"))
    }
}

#[test]
fn every_duty_names_tests_that_exist() {
    let text = read("docs/compliance.md");
    let rows = duty_rows(&text);
    // The duties the map must cover (issue 12).
    for duty in [
        "art. 5(1)(c)",
        "art. 5(1)(e)",
        "art. 13",
        "art. 15",
        "art. 16",
        "art. 17",
        "art. 20",
        "art. 25",
        "art. 28",
        "art. 30",
        "art. 32",
        "art. 33",
        "Journal retention",
        "Bookkeeping",
        "§ 42 a",
        "Datatilsynet",
    ] {
        assert!(
            rows.iter().any(|(d, _)| d.contains(duty)),
            "no row for {duty:?} in docs/compliance.md"
        );
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for (duty, tests) in &rows {
        let refs = test_refs(tests);
        if refs.is_empty() {
            missing.push(format!("{duty}: names no test"));
        }
        for (file, name) in refs {
            checked += 1;
            if let Err(e) = test_exists(&file, &name) {
                missing.push(format!("{duty}: {e}"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    assert!(checked >= 25, "only {checked} tests named");
}

#[test]
fn the_checker_finds_missing_and_ignored_tests() {
    assert!(test_exists(
        "crates/konsult-server/tests/compliance_map.rs",
        "every_duty_names_tests_that_exist"
    )
    .is_ok());
    assert!(test_exists(
        "crates/konsult-server/tests/compliance_map.rs",
        "no_such_test"
    )
    .is_err());
    assert!(test_exists("crates/konsult-server/tests/nope.rs", "x").is_err());
    assert!(test_exists("docs/compliance.md", "x").is_err());
    let refs = test_refs("`a/b.rs::one`, `tests/browser/x.test.js::a title with spaces`");
    assert_eq!(
        refs,
        [
            ("a/b.rs".to_owned(), "one".to_owned()),
            (
                "tests/browser/x.test.js".to_owned(),
                "a title with spaces".to_owned()
            )
        ]
    );
}

#[test]
fn dpa_template_covers_article_28() {
    let text = read("docs/dpa-template.md");
    // Art. 28(3)(a)–(h), each with its own clause, plus sub-processors
    // (28(2), (4)) and the breach duty (33(2)).
    for point in [
        "28(3)(a)", "28(3)(b)", "28(3)(c)", "28(3)(d)", "28(3)(e)", "28(3)(f)", "28(3)(g)",
        "28(3)(h)", "28(2)", "28(4)", "33(2)",
    ] {
        assert!(
            text.contains(point),
            "the DPA template does not cover art. {point}"
        );
    }
    for doc in ["docs/security-overview.md", "docs/export-schema.md"] {
        assert!(root().join(doc).exists(), "{doc} is missing");
    }
}
