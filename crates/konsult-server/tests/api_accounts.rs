//! Taking access away and adding clinics (issue 10, items 7 and 8):
//! deactivation, password change and reset, logout and "log out
//! everywhere" end sessions and the signaling WebSockets that rest on them;
//! the password policy; the `__Host-` session cookie under TLS; setup links
//! that expire; a second clinic from the command line, isolated from the
//! first; and e-mail addresses of one clinic that stay invisible to another.

use crate::common;

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use common::signal::{
    self, book, connect, join, next, send, therapist_hello, ClinicFixture, Next, Ws,
};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The password of the accounts these tests create.
const PASSWORD: &str = "lange ord er gode";

/// Logs in without a cookie store; returns the `name=token` cookie and the
/// CSRF token (or the failed status).
async fn login_raw(
    app: &TestApp,
    email: &str,
    password: &str,
) -> Result<(String, String), (StatusCode, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{}/api/login", app.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("konsult_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match (status, cookie) {
        (StatusCode::OK, Some(cookie)) => {
            Ok((cookie, body["csrf_token"].as_str().unwrap().to_owned()))
        }
        _ => Err((status, body)),
    }
}

/// A session of an account made through the API.
#[derive(Clone)]
struct Login {
    cookie: String,
    csrf: String,
}

impl Login {
    async fn new(app: &TestApp, email: &str, password: &str) -> Self {
        let (cookie, csrf) = login_raw(app, email, password)
            .await
            .unwrap_or_else(|e| panic!("login of {email} failed: {e:?}"));
        Self { cookie, csrf }
    }

    async fn call(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let fx = ClinicFixture {
            clinic: konsult_domain::ClinicId::from_uuid(uuid::Uuid::nil()),
            therapist: konsult_domain::TherapistId::from_uuid(uuid::Uuid::nil()),
            cookie: self.cookie.clone(),
            csrf: self.csrf.clone(),
        };
        signal::api(app, &fx, method, path, body).await
    }

    async fn me(&self, app: &TestApp) -> StatusCode {
        self.call(app, Method::GET, "/api/me", None).await.0
    }
}

/// Creates a therapist in the fixture's clinic through the API; returns its id.
async fn add_therapist(app: &TestApp, fx: &ClinicFixture, email: &str, role: &str) -> String {
    let (status, body) = signal::api(
        app,
        fx,
        Method::POST,
        "/api/therapists",
        Some(json!({"name": "Tove Terapeut", "email": email, "password": PASSWORD, "role": role})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// A therapist's WebSocket, joined to a consultation of the clinic.
async fn therapist_socket(app: &TestApp, fx: &ClinicFixture, login: &Login) -> Ws {
    let b = book(app, fx, Duration::minutes(5), true).await;
    let mut ws = connect(app, Some(&login.cookie)).await;
    join(&mut ws, therapist_hello(b.id())).await;
    ws
}

/// Waits at most `limit` for the server to end the socket: `error`
/// `unauthorized`, then close 1008. Returns how long it took.
async fn ended_within(ws: &mut Ws, limit: StdDuration) -> StdDuration {
    let start = Instant::now();
    let ended = tokio::time::timeout(limit, async {
        loop {
            match next(ws).await {
                Next::Message(m) => {
                    let json = serde_json::to_value(&m).unwrap();
                    if json["type"] == "error" {
                        assert_eq!(json["code"], "unauthorized", "{json}");
                    }
                }
                Next::Closed(code) => return code,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the socket was still open after {limit:?}"));
    assert_eq!(ended, Some(1008), "close code");
    start.elapsed()
}

/// The socket is still open: a ping gets a pong.
async fn still_open(ws: &mut Ws) {
    send(ws, r#"{"type":"ping"}"#).await;
    match next(ws).await {
        Next::Message(m) => assert_eq!(serde_json::to_value(&m).unwrap()["type"], "pong"),
        Next::Closed(code) => panic!("closed ({code:?}) where it should stay open"),
    }
}

async fn audit_actions(app: &TestApp, fx: &ClinicFixture) -> Vec<String> {
    let (status, page) = signal::api(app, fx, Method::GET, "/api/audit?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn deactivation_ends_sockets_and_logins(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = signal::clinic(&app, "Nord").await;
    let tove = add_therapist(&app, &fx, "tove@nord.dk", "therapist").await;
    let login = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let other_device = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let mut ws = therapist_socket(&app, &fx, &login).await;

    let (status, body) = signal::api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/therapists/{tove}/deactivate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false);
    let took = ended_within(&mut ws, StdDuration::from_secs(1)).await;
    eprintln!("the WebSocket ended {took:?} after the deactivation answered");

    // Every session is gone, and logging in is refused like a wrong password.
    assert_eq!(login.me(&app).await, StatusCode::UNAUTHORIZED);
    assert_eq!(other_device.me(&app).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_raw(&app, "tove@nord.dk", PASSWORD)
            .await
            .unwrap_err()
            .0,
        StatusCode::UNAUTHORIZED
    );
    // A new socket with the old cookie is refused.
    let mut again = connect(&app, Some(&login.cookie)).await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    signal::join_refused(&mut again, therapist_hello(b.id()), "unauthorized").await;

    // Reactivated, the account logs in again with its password.
    let (status, body) = signal::api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/therapists/{tove}/reactivate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true);
    Login::new(&app, "tove@nord.dk", PASSWORD).await;

    let actions = audit_actions(&app, &fx).await;
    for action in ["therapist.deactivate", "therapist.reactivate"] {
        assert_eq!(
            actions.iter().filter(|a| *a == action).count(),
            1,
            "{action} in {actions:?}"
        );
    }
    app.stop().await;
}

on_both_databases!(
    deactivation_ends_sockets_and_logins,
    super::deactivation_ends_sockets_and_logins
);

async fn last_admin_stays(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = signal::clinic(&app, "Nord").await;
    let me = fx.therapist.as_uuid();
    let (status, body) = signal::api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/therapists/{me}/deactivate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "urn:konsult:problem:last_admin");
    // Another clinic's account is not found, as if it did not exist.
    let other = signal::clinic(&app, "Syd").await;
    let theirs = other.therapist.as_uuid();
    for action in ["deactivate", "reactivate"] {
        let (status, _) = signal::api(
            &app,
            &fx,
            Method::POST,
            &format!("/api/therapists/{theirs}/{action}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    // With a second admin, the first may go.
    add_therapist(&app, &fx, "anden@nord.dk", "admin").await;
    let (status, body) = signal::api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/therapists/{me}/deactivate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... and the deactivating admin's own session ended with it.
    let (status, _) = signal::api(&app, &fx, Method::GET, "/api/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

on_both_databases!(last_admin_stays, super::last_admin_stays);

async fn logout_ends_that_sessions_socket_only(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = signal::clinic(&app, "Nord").await;
    add_therapist(&app, &fx, "tove@nord.dk", "therapist").await;
    let here = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let there = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let mut ws_here = therapist_socket(&app, &fx, &here).await;
    let mut ws_there = therapist_socket(&app, &fx, &there).await;

    let (status, _) = here.call(&app, Method::POST, "/api/logout", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    ended_within(&mut ws_here, StdDuration::from_secs(1)).await;
    assert_eq!(here.me(&app).await, StatusCode::UNAUTHORIZED);
    // The other device's session and socket go on.
    still_open(&mut ws_there).await;
    assert_eq!(there.me(&app).await, StatusCode::OK);

    // "Log out everywhere" ends them all.
    let third = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let (status, _) = third
        .call(&app, Method::POST, "/api/logout/everywhere", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    ended_within(&mut ws_there, StdDuration::from_secs(1)).await;
    assert_eq!(there.me(&app).await, StatusCode::UNAUTHORIZED);
    assert_eq!(third.me(&app).await, StatusCode::UNAUTHORIZED);
    assert!(audit_actions(&app, &fx)
        .await
        .contains(&"therapist.sessions_revoked".to_owned()));
    app.stop().await;
}

on_both_databases!(
    logout_ends_that_sessions_socket_only,
    super::logout_ends_that_sessions_socket_only
);

async fn password_change_and_reset_end_sessions(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = signal::clinic(&app, "Nord").await;
    let tove = add_therapist(&app, &fx, "tove@nord.dk", "therapist").await;
    let here = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let there = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let mut ws_there = therapist_socket(&app, &fx, &there).await;

    // The current password is needed.
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, body) = here
        .call(
            &app,
            Method::POST,
            "/api/account/password",
            Some(change("forkert forkert", "nye lange ord her")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["code"], "wrong_current_password");
    assert!(body["errors"][0]["da"]
        .as_str()
        .unwrap()
        .contains("forkert"));
    assert_eq!(
        there.me(&app).await,
        StatusCode::OK,
        "a refused change ends nothing"
    );

    let (status, body) = here
        .call(
            &app,
            Method::POST,
            "/api/account/password",
            Some(change(PASSWORD, "nye lange ord her")),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // This session goes on; the other one and its socket end.
    assert_eq!(here.me(&app).await, StatusCode::OK);
    ended_within(&mut ws_there, StdDuration::from_secs(1)).await;
    assert_eq!(there.me(&app).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_raw(&app, "tove@nord.dk", PASSWORD)
            .await
            .unwrap_err()
            .0,
        StatusCode::UNAUTHORIZED
    );
    let fresh = Login::new(&app, "tove@nord.dk", "nye lange ord her").await;
    let mut ws_fresh = therapist_socket(&app, &fx, &fresh).await;

    // An admin's reset ends every session of the account.
    let (status, body) = signal::api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/therapists/{tove}/password"),
        Some(json!({"new_password": "adminens nye kode"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    ended_within(&mut ws_fresh, StdDuration::from_secs(1)).await;
    assert_eq!(here.me(&app).await, StatusCode::UNAUTHORIZED);
    assert_eq!(fresh.me(&app).await, StatusCode::UNAUTHORIZED);
    Login::new(&app, "tove@nord.dk", "adminens nye kode").await;
    // An admin does not reset their own password without the current one.
    let me = fx.therapist.as_uuid();
    let (status, body) = signal::api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/therapists/{me}/password"),
        Some(json!({"new_password": "adminens nye kode"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "urn:konsult:problem:own_account");

    let actions = audit_actions(&app, &fx).await;
    assert!(
        actions.contains(&"therapist.password_change".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"therapist.password_reset".to_owned()),
        "{actions:?}"
    );
    app.stop().await;
}

on_both_databases!(
    password_change_and_reset_end_sessions,
    super::password_change_and_reset_end_sessions
);

async fn short_and_common_passwords_are_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = signal::clinic(&app, "Nord").await;
    let tove = add_therapist(&app, &fx, "tove@nord.dk", "therapist").await;
    let login = Login::new(&app, "tove@nord.dk", PASSWORD).await;
    let refused = [
        ("kort kode", "password_too_short"),
        ("elleve tegn", "password_too_short"),
        ("qwerty123456", "password_too_common"),
        ("QWERTY123456", "password_too_common"),
        ("1q2w3e4r5t6y", "password_too_common"),
    ];
    for (password, code) in refused {
        let attempts = [
            signal::api(
                &app,
                &fx,
                Method::POST,
                "/api/therapists",
                Some(json!({"name": "Ny", "email": "ny@nord.dk", "password": password, "role": "therapist"})),
            )
            .await,
            signal::api(
                &app,
                &fx,
                Method::POST,
                &format!("/api/therapists/{tove}/password"),
                Some(json!({"new_password": password})),
            )
            .await,
            login
                .call(
                    &app,
                    Method::POST,
                    "/api/account/password",
                    Some(json!({"current_password": PASSWORD, "new_password": password})),
                )
                .await,
        ];
        for (status, body) in attempts {
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{password}: {body}"
            );
            assert_eq!(body["type"], "urn:konsult:problem:weak_password");
            assert_eq!(body["errors"][0]["code"], code, "{password}");
            assert!(!body["errors"][0]["da"].as_str().unwrap().is_empty());
            assert!(!body["errors"][0]["en"].as_str().unwrap().is_empty());
        }
    }
    // Nothing changed: the account was not created, the password stands.
    assert_eq!(login.me(&app).await, StatusCode::OK);
    Login::new(&app, "tove@nord.dk", PASSWORD).await;
    assert!(login_raw(&app, "ny@nord.dk", "qwerty123456").await.is_err());
    // At setup too.
    let fresh = TestApp::spawn(db).await;
    let link = konsult_server::Application::setup_link_for(&fresh.state)
        .await
        .unwrap()
        .unwrap();
    let token = link.split('#').nth(1).unwrap();
    let client = Client::new(&fresh.base);
    let (status, body) = client
        .post(
            "/api/setup",
            json!({"setup_token": token, "clinic_name": "Ny", "ydernummer": "123456", "specialer": [51],
                   "admin_name": "A", "admin_email": "a@ny.dk", "admin_password": "FinalFantasy"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["code"], "password_too_common");
    fresh.stop().await;
    app.stop().await;
}

on_both_databases!(
    short_and_common_passwords_are_refused,
    super::short_and_common_passwords_are_refused
);

async fn setup_links_expire(db: Db) {
    let app = TestApp::spawn(db).await;
    let link = konsult_server::Application::setup_link_for(&app.state)
        .await
        .unwrap()
        .unwrap();
    let token = link.split('#').nth(1).unwrap().to_owned();
    let client = Client::new(&app.base);
    let form = json!({"setup_token": token, "clinic_name": "Fysio Øst", "ydernummer": "123456", "specialer": [51],
                      "admin_name": "Ada", "admin_email": "ada@oest.dk", "admin_password": PASSWORD});
    let status = client
        .post_ok(
            "/api/setup/status",
            json!({"setup_token": token}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(status["purpose"], "first_clinic");

    // A day and a minute later (setup_link_hours = 24) it is refused, and
    // says so.
    app.set_now(t0() + Duration::hours(24) + Duration::minutes(1));
    let answers = [
        client
            .post("/api/setup/status", json!({"setup_token": token}))
            .await,
        client.post("/api/setup", form.clone()).await,
    ];
    for (status, body) in answers {
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["type"], "urn:konsult:problem:setup_link_expired");
        assert!(body["detail"].as_str().unwrap().contains("expired"));
    }
    assert!(login_raw(&app, "ada@oest.dk", PASSWORD).await.is_err());
    // A restart of an installation without a clinic prints a fresh link.
    let fresh = konsult_server::Application::setup_link_for(&app.state)
        .await
        .unwrap()
        .unwrap();
    let fresh_token = fresh.split('#').nth(1).unwrap();
    let mut form = form;
    form["setup_token"] = json!(fresh_token);
    client
        .post_ok("/api/setup", form, StatusCode::CREATED)
        .await;
    app.stop().await;
}

on_both_databases!(setup_links_expire, super::setup_links_expire);

/// Runs `konsult clinic add …` on the test app's database and key.
async fn clinic_add(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_konsult"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KONSULT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("KONSULT_DATA_DIR", app.dir.path())
        .env("KONSULT_DATABASE_URL", app.state.settings.database_url())
        .env("KONSULT_PUBLIC_URL", &app.base)
        .args(["clinic", "add"])
        .args(args);
    cmd.output().await.unwrap()
}

async fn second_clinic_from_the_command_line(db: Db) {
    let app = TestApp::spawn(db).await;
    let a = app
        .setup_clinic("Fysio Nord", "111111", "admin@nord.dk")
        .await;
    let a_clinic = a.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bad input is one clear line, and adds nothing.
    let out = clinic_add(&app, &["--name", "Fysio Syd", "--ydernummer", "12"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("konsult: "),
        "{stderr}"
    );
    assert!(stderr.contains("ydernummer"), "{stderr}");

    let out = clinic_add(
        &app,
        &[
            "--name",
            "Fysio Syd",
            "--ydernummer",
            "654321",
            "--specialer",
            "62",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = stdout
        .split_whitespace()
        .find(|w| w.contains("/app/setup#"))
        .unwrap_or_else(|| panic!("no link in {stdout}"));
    assert!(
        link.starts_with(&format!("{}/app/setup#", app.base)),
        "{link}"
    );
    let token = link.split('#').nth(1).unwrap();

    let client = Client::new(&app.base);
    let status = client
        .post_ok(
            "/api/setup/status",
            json!({"setup_token": token}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        status,
        json!({"purpose": "clinic_admin", "clinic_name": "Fysio Syd"})
    );
    let created = client
        .post_ok(
            "/api/setup",
            json!({"setup_token": token, "admin_name": "Sara Syd", "admin_email": "sara@syd.dk", "admin_password": PASSWORD}),
            StatusCode::CREATED,
        )
        .await;
    assert!(
        stdout.contains(created["clinic_id"].as_str().unwrap()),
        "{stdout}"
    );
    // Used up.
    let (status, _) = client
        .post("/api/setup/status", json!({"setup_token": token}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    client.login("sara@syd.dk", PASSWORD).await;
    let clinic = client.get_ok("/api/clinic").await;
    assert_eq!(clinic["name"], "Fysio Syd");
    assert_eq!(clinic["ydernummer"], "654321");
    assert_eq!(clinic["specialer"], json!([62]));
    assert_ne!(clinic["id"], a_clinic.as_str());
    // Each admin sees their own clinic's accounts and audit log only.
    let b_accounts = client.get_ok("/api/therapists").await;
    assert_eq!(b_accounts.as_array().unwrap().len(), 1, "{b_accounts}");
    assert_eq!(b_accounts[0]["email"], "sara@syd.dk");
    let a_accounts = a.get_ok("/api/therapists").await;
    assert!(
        !a_accounts.to_string().contains("sara@syd.dk"),
        "{a_accounts}"
    );
    let b_actions: Vec<_> = client.get_ok("/api/audit").await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        b_actions[..2],
        ["clinic.create_by_operator", "clinic.first_admin"],
        "{b_actions:?}"
    );
    assert_eq!(
        client.get_ok("/api/audit").await["chain"]["status"],
        "intact"
    );
    let a_audit = a.get_ok("/api/audit").await;
    assert!(
        !a_audit.to_string().contains("create_by_operator"),
        "{a_audit}"
    );
    app.stop().await;
}

on_both_databases!(
    second_clinic_from_the_command_line,
    super::second_clinic_from_the_command_line
);

async fn an_admin_learns_nothing_of_another_clinics_addresses(db: Db) {
    let app = TestApp::spawn(db).await;
    let a = app
        .setup_clinic("Fysio Nord", "111111", "admin@nord.dk")
        .await;
    let b = app
        .setup_clinic("Fysio Syd", "222222", "admin@syd.dk")
        .await;
    let new = |email: &str, password: &str| json!({"name": "Kim", "email": email, "password": password, "role": "therapist"});

    // Clinic B has kim@fysio.dk. For A's admin, that address is as free as
    // one nobody has: the same answer, in the same shape.
    b.post_ok(
        "/api/therapists",
        new("kim@fysio.dk", "kims kode i syd"),
        StatusCode::CREATED,
    )
    .await;
    let taken_elsewhere = a
        .post("/api/therapists", new("KIM@fysio.dk", "kims kode i nord"))
        .await;
    let free = a
        .post("/api/therapists", new("ny@fysio.dk", "kims kode i nord"))
        .await;
    assert_eq!(
        taken_elsewhere.0,
        StatusCode::CREATED,
        "{}",
        taken_elsewhere.1
    );
    assert_eq!(free.0, StatusCode::CREATED);
    let keys = |v: &Value| {
        let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&taken_elsewhere.1), keys(&free.1));
    // The admin's own clinic does refuse its own duplicate.
    let (status, body) = a
        .post("/api/therapists", new("kim@fysio.dk", "kims kode i nord"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(!body.to_string().contains("Syd"), "{body}");

    // Each password logs in to its own clinic.
    let nord = Client::new(&app.base);
    nord.login("kim@fysio.dk", "kims kode i nord").await;
    assert_eq!(nord.get_ok("/api/me").await["clinic_name"], "Fysio Nord");
    let syd = Client::new(&app.base);
    syd.login("Kim@Fysio.dk", "kims kode i syd").await;
    assert_eq!(syd.get_ok("/api/me").await["clinic_name"], "Fysio Syd");
    assert_eq!(
        login_raw(&app, "kim@fysio.dk", "ingen af dem")
            .await
            .unwrap_err()
            .0,
        StatusCode::UNAUTHORIZED
    );

    // The same password in both: the login asks which clinic, naming only
    // the clinics whose account the password opens.
    b.post_ok(
        "/api/therapists",
        new("dobbelt@fysio.dk", "samme kode begge steder"),
        StatusCode::CREATED,
    )
    .await;
    a.post_ok(
        "/api/therapists",
        new("dobbelt@fysio.dk", "samme kode begge steder"),
        StatusCode::CREATED,
    )
    .await;
    let both = Client::new(&app.base);
    let (status, body) = both
        .post(
            "/api/login",
            json!({"email": "dobbelt@fysio.dk", "password": "samme kode begge steder"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "urn:konsult:problem:choose_clinic");
    let mut names: Vec<_> = body["clinics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Fysio Nord", "Fysio Syd"]);
    let syd_id = body["clinics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Fysio Syd")
        .unwrap()["id"]
        .clone();
    let (status, me) = both
        .post(
            "/api/login",
            json!({"email": "dobbelt@fysio.dk", "password": "samme kode begge steder", "clinic_id": syd_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["clinic_name"], "Fysio Syd");
    app.stop().await;
}

on_both_databases!(
    an_admin_learns_nothing_of_another_clinics_addresses,
    super::an_admin_learns_nothing_of_another_clinics_addresses
);

#[tokio::test]
async fn behind_a_proxy_the_cookie_is_host_prefixed() {
    // tls.behind_proxy: plain HTTP here, TLS at the proxy; cookies are
    // Secure and the session cookie is `__Host-konsult_session`.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.tls.behind_proxy = true;
    let app = TestApp::spawn_with(settings, dir, t0()).await;
    let fx = signal::clinic(&app, "Nord").await;
    add_therapist_with_cookie(&app, &fx).await;
    let (cookie, _) = login_raw(&app, "tove@nord.dk", PASSWORD).await.unwrap();
    assert!(cookie.starts_with("__Host-konsult_session="), "{cookie}");
    // The signaling WebSocket reads it under that name only.
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let mut ws = connect(&app, Some(&cookie)).await;
    join(&mut ws, therapist_hello(b.id())).await;
    let plain = cookie.replacen("__Host-", "", 1);
    let mut ws = connect(&app, Some(&plain)).await;
    signal::join_refused(&mut ws, therapist_hello(b.id()), "unauthorized").await;
    app.stop().await;
}

/// The fixture's session cookie is made by the store under the plain name;
/// under `__Host-` naming it is sent under the secure name.
async fn add_therapist_with_cookie(app: &TestApp, fx: &ClinicFixture) {
    let fx = ClinicFixture {
        cookie: fx
            .cookie
            .replacen("konsult_session=", "__Host-konsult_session=", 1),
        ..fx.clone()
    };
    add_therapist(app, &fx, "tove@nord.dk", "therapist").await;
}

#[tokio::test]
async fn under_tls_the_session_cookie_is_host_prefixed() {
    let dir = tempfile::tempdir().unwrap();
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.turn.enabled = false;
    settings.tls.cert = Some(cert);
    settings.tls.key = Some(key);
    let app = TestApp::spawn_with(settings, dir, t0()).await;
    let https = app.base.replace("http://", "https://");
    app.state
        .store
        .create_clinic(
            konsult_store::clinics::NewClinic {
                name: "TLS-klinik".into(),
                ydernummer: "123456".into(),
                specialer: vec![konsult_domain::Speciale::Almen],
            },
            konsult_store::therapists::NewTherapist {
                name: "T".into(),
                email: "tls@klinik.dk".into(),
                password_hash: konsult_server::auth::hash_password(ADMIN_PASSWORD).unwrap(),
                role: konsult_store::therapists::Role::Admin,
            },
            app.now(),
        )
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap(),
        )
        .use_rustls_tls()
        .build()
        .unwrap();
    let res = client
        .post(format!("{https}/api/login"))
        .json(&json!({"email": "tls@klinik.dk", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("__Host-konsult_session="),
        "{set_cookie}"
    );
    for attr in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.contains(attr), "{attr} missing in {set_cookie}");
    }
    assert!(
        !set_cookie.to_ascii_lowercase().contains("domain="),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let me = |cookie: String| {
        let client = client.clone();
        let https = https.clone();
        async move {
            client
                .get(format!("{https}/api/me"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(cookie.clone()).await, 200);
    // The same token under the unprefixed name is not a session here.
    assert_eq!(me(cookie.replacen("__Host-", "", 1)).await, 401);
    // Logging out clears the prefixed cookie.
    let csrf = client
        .get(format!("{https}/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client
        .post(format!("{https}/api/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let cleared = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("__Host-konsult_session="), "{cleared}");
    assert!(
        cleared.contains("Secure") && cleared.contains("Path=/"),
        "{cleared}"
    );
    assert_eq!(me(cookie).await, 401);
    app.stop().await;
}

/// When every password check is taken for longer than a login may wait, a
/// login is refused with 503 and `Retry-After` (not held open, not hashed),
/// and once the checks are free the owner logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_behind_a_full_queue_of_checks_gets_503_with_retry_after() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.setup_clinic("Fysio Nord", "111111", "admin@nord.dk")
        .await;
    // Every check taken, as by a rush of logins.
    let rush = app.state.password_checks.occupy_all().await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/api/login", app.base))
        .json(&json!({"email": "admin@nord.dk", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:konsult:problem:busy", "{body}");
    assert!(
        waited < konsult_server::auth::PasswordChecks::QUEUE_TIMEOUT + StdDuration::from_secs(2),
        "refused after {waited:?}"
    );
    drop(rush);
    // After the rush the owner logs in.
    let client = Client::new(&app.base);
    client.login("admin@nord.dk", ADMIN_PASSWORD).await;
    app.stop().await;
}
