//! The server starts on port 0, answers its health checks, sends its
//! security headers and documents its API.

use crate::common;

use common::{Db, TestApp};

#[tokio::test]
async fn healthz_readyz_and_security_headers() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    // Plain HTTP on loopback: no HSTS.
    assert!(res.headers().get("strict-transport-security").is_none());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    app.stop().await;
}

#[tokio::test]
async fn openapi_documents_every_api_route() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc: serde_json::Value = reqwest::get(format!("{}/api/openapi.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/setup",
        "/api/login",
        "/api/me",
        "/api/clinic",
        "/api/clinic/fee-table",
        "/api/therapists",
        "/api/audit",
        "/api/patients",
        "/api/patients/{id}",
        "/api/patients/{id}/visits",
        "/api/patients/{id}/courses",
        "/api/courses/{id}/assessments",
        "/api/assessments/{id}/revoke",
        "/api/consultations",
        "/api/consultations/{id}/complete",
        "/api/billing",
        "/api/billing/export.csv",
        "/api/join/{token}",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the OpenAPI document"
        );
    }
    // Every documented operation answers something other than "no such route".
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{id}", &uuid::Uuid::nil().to_string())
                    .replace("{token}", "x")
            );
            let res = reqwest::Client::new()
                .request(method.to_uppercase().parse().unwrap(), url)
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            assert_ne!(
                body["detail"], "route not found",
                "{method} {path} is documented but not routed"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_get_problem_details() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = reqwest::get(format!("{}/api/nothing-here", app.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    app.stop().await;
}
