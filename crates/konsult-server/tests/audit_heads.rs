//! The operator's check of the audit log from outside the database:
//! `konsult audit heads` prints each clinic's chain head signed with the
//! installation's key; `konsult audit check` finds a head that no longer
//! holds (entries removed from the end, which the chain alone cannot show)
//! and an export that was altered.

use crate::common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn konsult(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_konsult"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KONSULT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("KONSULT_DATA_DIR", app.dir.path())
        .env("KONSULT_DATABASE_URL", app.state.settings.database_url())
        .env("KONSULT_TURN__ENABLED", "false")
        .args(args);
    cmd.output().await.unwrap()
}

#[tokio::test]
async fn exported_heads_are_checked_against_the_database() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app
        .setup_clinic("Fysio Nord", "111111", "admin@nord.dk")
        .await;
    for name in ["Ane", "Bo", "Carl"] {
        admin
            .post_ok(
                "/api/patients",
                json!({"name": name, "phone": "20304050"}),
                StatusCode::CREATED,
            )
            .await;
    }
    let out = konsult(&app, &["audit", "heads"]).await;
    assert!(out.status.success(), "{out:?}");
    let exported = String::from_utf8(out.stdout).unwrap();
    let head: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert!(head["head"].as_str().unwrap().starts_with("k1:"), "{head}");
    let seq = head["seq"].as_i64().unwrap();
    assert!(seq >= 4, "{head}");

    let file = app.dir.path().join("heads.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let out = konsult(&app, &["audit", "check", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": holds"));

    // An altered export is not this installation's.
    let mut altered = head.clone();
    altered["seq"] = json!(seq - 1);
    let forged = app.dir.path().join("forged.jsonl");
    std::fs::write(&forged, format!("{altered}\n")).unwrap();
    let out = konsult(&app, &["audit", "check", forged.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT signed"));

    // Someone with write access to the database removes the last two
    // entries and moves the head back: the chain still verifies, the
    // exported head does not hold.
    let pool = sqlx::SqlitePool::connect(&app.state.settings.database_url())
        .await
        .unwrap();
    let clinic = head["clinic"].as_str().unwrap();
    let kept: String =
        sqlx::query_scalar("SELECT hash FROM audit_log WHERE clinic_id = ? AND seq = ?")
            .bind(clinic)
            .bind(seq - 2)
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE clinic_id = ? AND seq > ?")
        .bind(clinic)
        .bind(seq - 2)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_heads SET seq = ?, head = ? WHERE clinic_id = ?")
        .bind(seq - 2)
        .bind(&kept)
        .bind(clinic)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let chain = admin.get_ok("/api/audit").await;
    assert_eq!(chain["chain"]["status"], "intact", "{chain}");
    let out = konsult(&app, &["audit", "check", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("REMOVED or REWRITTEN"), "{stdout}");
    app.stop().await;
}

#[tokio::test]
async fn an_unkeyed_chain_is_rekeyed_at_the_first_start_and_never_again() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app
        .setup_clinic("Fysio Syd", "222222", "admin@syd.dk")
        .await;
    admin
        .post_ok(
            "/api/patients",
            json!({"name": "Ane", "phone": "20304050"}),
            StatusCode::CREATED,
        )
        .await;
    // The first start left its marker next to the key file.
    let marker = konsult_server::startup::audit_keyed_marker(&app.state.settings.key_file());
    assert!(marker.exists(), "no marker at {}", marker.display());
    let out = konsult(&app, &["audit", "heads"]).await;
    let head: Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let clinic =
        konsult_domain::ClinicId::from_uuid(head["clinic"].as_str().unwrap().parse().unwrap());

    // Someone who can write the database but lacks the key rewrites the
    // chain with the old unkeyed hashes. Opening the database again (the
    // command below does what a restart does) must not re-key the forgery.
    app.state.store.rewrite_chain_unkeyed(clinic).await.unwrap();
    let out = konsult(&app, &["audit", "heads"]).await;
    assert!(out.status.success(), "{out:?}");
    let chain = admin.get_ok("/api/audit").await;
    assert_eq!(chain["chain"]["status"], "broken", "{chain}");

    // An installation from before the key (no marker yet) is re-keyed once,
    // at its first start.
    std::fs::remove_file(&marker).unwrap();
    let out = konsult(&app, &["audit", "heads"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(marker.exists());
    let chain = admin.get_ok("/api/audit").await;
    assert_eq!(chain["chain"]["status"], "intact", "{chain}");
    app.stop().await;
}
