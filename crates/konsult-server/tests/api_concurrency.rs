//! Twenty completions of different consultations of one patient on one
//! Danish calendar day, all at once: exactly one billable line, on SQLite
//! and on PostgreSQL; the others say why they are not billable.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::StatusCode;

async fn parallel_completions(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = std::sync::Arc::new(app.setup_clinic("Fysio", "123456", "admin@fysio.dk").await);
    let clinic = client.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = eligible_patient(&app, &client, "Per Parallel").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let start = app.now() + Duration::minutes(30 + 20 * i);
        let (status, body) = schedule(&client, &p, start).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["consultation"]["id"].as_str().unwrap().to_owned();
        simulate_call(&app, &clinic, &id, start, true).await;
        ids.push(id);
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let client = client.clone();
            let id = id.clone();
            tokio::spawn(async move {
                client
                    .post_ok(
                        &format!("/api/consultations/{id}/complete"),
                        journal(),
                        StatusCode::OK,
                    )
                    .await
            })
        })
        .collect();
    let mut billable = 0;
    for t in tasks {
        let result = t.await.unwrap();
        if result["billable"] == true {
            billable += 1;
        } else {
            assert_eq!(
                result["reason"]["code"], "already_billed_that_day",
                "{result}"
            );
        }
    }
    assert_eq!(billable, 1);
    let page = client
        .get_ok("/api/billing?from=2026-11-25&to=2026-11-25")
        .await;
    assert_eq!(page["lines"].as_array().unwrap().len(), 1, "{page}");
    // Completing them all again changes nothing.
    for id in &ids {
        let again = client
            .post_ok(
                &format!("/api/consultations/{id}/complete"),
                journal(),
                StatusCode::OK,
            )
            .await;
        assert_eq!(again["repeated"], true);
    }
    assert_eq!(
        client
            .get_ok("/api/billing?from=2026-11-25&to=2026-11-25")
            .await["lines"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

on_both_databases!(
    twenty_parallel_completions_one_line,
    super::parallel_completions
);

/// The database itself refuses a second original line for a patient-day,
/// whatever the application does.
async fn constraint(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = app.setup_clinic("Fysio", "123456", "admin@fysio.dk").await;
    let clinic = client.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = eligible_patient(&app, &client, "Dora Dobbelt").await;
    let start = app.now() + Duration::hours(1);
    let (_, body) = schedule(&client, &p, start).await;
    let id = body["consultation"]["id"].as_str().unwrap().to_owned();
    simulate_call(&app, &clinic, &id, start, true).await;
    client
        .post_ok(
            &format!("/api/consultations/{id}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    let (_, body) = schedule(&client, &p, start + Duration::hours(2)).await;
    let other = body["consultation"]["id"].as_str().unwrap().to_owned();
    let sql = format!(
        "INSERT INTO billing_lines (id, clinic_id, patient_id, consultation_id, kind, service_number, speciale, fee_ore, region_ore, patient_ore, calendar_day, created_at)
         VALUES ('{}', '{clinic}', '{}', '{other}', 'individual_video', '0131', 51, 30795, 12102, 18693, '2026-11-25', 0)",
        uuid::Uuid::new_v4(),
        p.patient_id
    );
    let result = match db {
        Db::Sqlite => {
            use sqlx::Connection;
            let path = app.dir.path().join("konsult.db");
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(&sql).execute(&mut conn).await.map(|_| ())
        }
        Db::Postgres => {
            use sqlx::Connection;
            let url = app.state.settings.database_url();
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(&sql).execute(&mut conn).await.map(|_| ())
        }
    };
    let err = result.expect_err("a second line for the patient-day must be refused");
    assert!(
        err.as_database_error().unwrap().is_unique_violation(),
        "{err}"
    );
    app.stop().await;
}

on_both_databases!(
    database_refuses_two_lines_per_patient_day,
    super::constraint
);
