//! First run: an empty installation hands out a one-time setup link; the
//! link creates the clinic and its admin once, and never again.

use crate::common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

fn form(token: &str) -> serde_json::Value {
    json!({
        "setup_token": token,
        "clinic_name": "Fysio Syd",
        "ydernummer": "654321",
        "specialer": [62],
        "admin_name": "Ada Admin",
        "admin_email": "ada@fysiosyd.dk",
        "admin_password": "en lang adgangskode",
    })
}

async fn first_run(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = Client::new(&app.base);
    // A wrong token changes nothing.
    let (status, _) = client.post("/api/setup", form("forged-token")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let link = konsult_server::Application::setup_link_for(&app.state)
        .await
        .unwrap()
        .expect("an empty installation has a setup link");
    let token = link.split('#').nth(1).unwrap().to_owned();
    assert!(link.starts_with(&format!("{}/app/setup#", app.base)));
    // Bad input with the right token is refused and does not use it up.
    let mut bad = form(&token);
    bad["ydernummer"] = json!("12");
    assert_eq!(
        client.post("/api/setup", bad).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut weak = form(&token);
    weak["admin_password"] = json!("kort");
    let (status, problem) = client.post("/api/setup", weak).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["code"], "password_too_short");

    let created = client
        .post_ok("/api/setup", form(&token), StatusCode::CREATED)
        .await;
    assert!(created["clinic_id"].is_string());
    // Used up.
    assert_eq!(
        client.post("/api/setup", form(&token)).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(konsult_server::Application::setup_link_for(&app.state)
        .await
        .unwrap()
        .is_none());

    client.login("ada@fysiosyd.dk", "en lang adgangskode").await;
    let clinic = client.get_ok("/api/clinic").await;
    assert_eq!(clinic["ydernummer"], "654321");
    assert_eq!(clinic["specialer"], json!([62]));
    assert_eq!(clinic["relay_only_default"], true);
    app.stop().await;
}

on_both_databases!(first_run_setup_link, super::first_run);
