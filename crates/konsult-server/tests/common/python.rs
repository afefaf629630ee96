//! The suite's Python tools (`scripts/python-tools`: openapi-spec-validator
//! and jsonschema from PyPI, in `target/pytools`), and the check script
//! `scripts/check_openapi.py` that uses them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with the tools installed: `KONSULT_TEST_PYTHON` (set by
/// `./scripts/test`), or what `scripts/python-tools` installs now.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KONSULT_TEST_PYTHON") {
        if Path::new(&p).exists() {
            return p.into();
        }
    }
    let out = Command::new(repo_root().join("scripts/python-tools"))
        .output()
        .expect("run scripts/python-tools");
    assert!(
        out.status.success(),
        "scripts/python-tools could not install the validator:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A body to check against a schema: a JSON pointer into the document
/// (`#/components/schemas/X`) or the path of a JSON Schema file.
pub fn sample(name: &str, schema: &str, instance: &Value) -> Value {
    serde_json::json!({"name": name, "schema": schema, "instance": instance})
}

/// The pointer to the JSON schema of one response of one operation.
pub fn response_schema(path: &str, method: &str, status: u16, media: &str) -> String {
    let escape = |s: &str| {
        s.replace('~', "~0")
            .replace('/', "~1")
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('+', "%2B")
    };
    format!(
        "#/paths/{}/{method}/responses/{status}/content/{}/schema",
        escape(path),
        escape(media)
    )
}

/// Runs `scripts/check_openapi.py` on `doc` and `samples`; returns whether
/// everything is valid and what the script printed.
pub fn check_openapi(doc: &Value, samples: &[Value]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let mut cmd = Command::new(python());
    cmd.current_dir(repo_root())
        .arg(repo_root().join("scripts/check_openapi.py"))
        .arg(&doc_path);
    if !samples.is_empty() {
        let samples_path = dir.path().join("samples.json");
        std::fs::write(&samples_path, serde_json::to_vec(samples).unwrap()).unwrap();
        cmd.arg(&samples_path);
    }
    let out = cmd.output().expect("run scripts/check_openapi.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
