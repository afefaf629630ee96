//! The document at `/api/openapi.json` is valid OpenAPI 3.1 by the real
//! validator (`openapi-spec-validator` from PyPI, installed by
//! `scripts/python-tools`), says what every operation needs and can answer
//! (security, parameters in their place, typed bodies, error responses),
//! and the bodies the server really sends match it.

use crate::common;

use chrono::Duration;
use common::python::{check_openapi, response_schema, sample};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn served_document(app: &TestApp) -> Value {
    let res = reqwest::get(format!("{}/api/openapi.json", app.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn openapi_document_passes_openapi_spec_validator() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let (ok, output) = check_openapi(&doc, &[]);
    println!("{output}");
    assert!(ok, "openapi-spec-validator found errors:\n{output}");
    app.stop().await;
}

/// A schema with no shape: an object without properties, or nothing.
fn untyped(schema: &Value) -> bool {
    let Some(obj) = schema.as_object() else {
        return true;
    };
    if obj.contains_key("$ref")
        || obj.contains_key("oneOf")
        || obj.contains_key("allOf")
        || obj.contains_key("anyOf")
        || obj.contains_key("enum")
        || obj.contains_key("const")
    {
        return false;
    }
    match obj.get("type") {
        None => true,
        Some(t) if t == "object" || t == &json!(["object", "null"]) => {
            !obj.contains_key("properties") && !obj.contains_key("additionalProperties")
        }
        Some(t) if t == "array" || t == &json!(["array", "null"]) => {
            obj.get("items").is_none_or(untyped)
        }
        Some(_) => false,
    }
}

#[tokio::test]
async fn every_operation_declares_security_parameters_bodies_and_errors() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = served_document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "konsult_session");
    assert_eq!(schemes["csrf"]["in"], "header");
    assert_eq!(schemes["csrf"]["name"], "x-csrf-token");
    let mut problems = Vec::new();
    let mut state_changing = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let public = path == "/api/setup" || path == "/api/login" || path.starts_with("/api/join/");
        for (method, op) in item.as_object().unwrap() {
            let here = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let changes = method != "get";
            // Security and the errors that go with it.
            if !public {
                let needs = if changes {
                    json!([{"session": [], "csrf": []}])
                } else {
                    json!([{"session": []}])
                };
                if op["security"] != needs {
                    problems.push(format!("{here}: security {}", op["security"]));
                }
                if !responses.contains_key("401") {
                    problems.push(format!("{here}: no 401"));
                }
                if changes {
                    state_changing += 1;
                    // A write can be refused by the state it meets (409)
                    // or a domain rule (422).
                    for status in ["403", "409", "422"] {
                        if !responses.contains_key(status) {
                            problems.push(format!("{here}: state-changing without {status}"));
                        }
                    }
                }
            }
            if public && !responses.contains_key("429") {
                problems.push(format!("{here}: rate-limited without 429"));
            }
            for status in ["500", "503"] {
                if !responses.contains_key(status) {
                    problems.push(format!("{here}: no {status}"));
                }
            }
            // Parameters: path template names in the path, the rest in the query.
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let in_template = path.contains(&format!("{{{name}}}"));
                let expected = if in_template { "path" } else { "query" };
                if p["in"] != expected {
                    problems.push(format!(
                        "{here}: parameter {name} is in {} (expected {expected})",
                        p["in"]
                    ));
                }
                if untyped(&p["schema"]) {
                    problems.push(format!("{here}: parameter {name} untyped"));
                }
            }
            if (op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"))
                || op.get("requestBody").is_some())
                && !responses.contains_key("400")
            {
                problems.push(format!("{here}: takes input but lists no 400"));
            }
            // Bodies: every request and response body has a shape.
            let mut bodies = Vec::new();
            if let Some(content) = op["requestBody"]["content"].as_object() {
                bodies.extend(content.iter().map(|(m, c)| (format!("request {m}"), c)));
            }
            for (status, r) in responses {
                if let Some(content) = r["content"].as_object() {
                    bodies.extend(content.iter().map(|(m, c)| (format!("{status} {m}"), c)));
                    if status.starts_with(['4', '5'])
                        && !content.contains_key("application/problem+json")
                    {
                        problems.push(format!("{here}: {status} is not a problem+json"));
                    }
                }
            }
            for (which, media) in bodies {
                if untyped(&media["schema"]) {
                    problems.push(format!("{here}: {which} body untyped: {}", media["schema"]));
                }
            }
        }
    }
    // Named schemas: no property without a shape.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (prop, s) in schema["properties"].as_object().into_iter().flatten() {
            if untyped(s) {
                problems.push(format!("schema {name}.{prop} untyped: {s}"));
            }
        }
    }
    assert!(
        state_changing >= 22,
        "only {state_changing} state-changing operations"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    app.stop().await;
}

#[tokio::test]
async fn real_responses_match_the_openapi_document() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app
        .setup_clinic("Fysio Kontrakt", "123456", "admin@kontrakt.dk")
        .await;
    let clinic = admin.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = eligible_patient(&app, &admin, "Karen Kontrakt").await;
    let pid = &p.patient_id;
    let start = app.now() + Duration::minutes(5);
    let (status, scheduled) = schedule(&admin, &p, start).await;
    assert_eq!(status, StatusCode::CREATED, "{scheduled}");
    let consultation = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    let token = scheduled["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    // The link works now: the patient's first screen and connection check.
    let join = admin.get_ok(&format!("/api/join/{token}")).await;
    let ice = admin
        .get_ok(&format!("/api/join/{token}/ice-servers"))
        .await;
    let join_privacy = admin.get_ok(&format!("/api/join/{token}/privacy")).await;
    simulate_call(&app, &clinic, &consultation, start, true).await;
    let completion = admin
        .post_ok(
            &format!("/api/consultations/{consultation}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    admin
        .call(
            reqwest::Method::PUT,
            &format!("/api/patients/{pid}"),
            Some(json!({"name": "Karen Kontrakt-Hansen", "phone": "20304050"})),
        )
        .await;
    admin
        .call(
            reqwest::Method::PUT,
            "/api/clinic/privacy-notice",
            Some(json!({"contact": "kontakt@fysio.example"})),
        )
        .await;

    let day = "2026-11-25";
    let gets: Vec<(&str, String)> = vec![
        ("/api/me", "/api/me".into()),
        ("/api/clinic", "/api/clinic".into()),
        ("/api/therapists", "/api/therapists".into()),
        ("/api/audit", "/api/audit?limit=20".into()),
        ("/api/catalogue", "/api/catalogue".into()),
        ("/api/patients", "/api/patients".into()),
        ("/api/patients/{id}", format!("/api/patients/{pid}")),
        (
            "/api/patients/{id}/visits",
            format!("/api/patients/{pid}/visits"),
        ),
        (
            "/api/patients/{id}/courses",
            format!("/api/patients/{pid}/courses"),
        ),
        (
            "/api/courses/{id}/assessments",
            format!("/api/courses/{}/assessments", p.course_id),
        ),
        (
            "/api/consultations",
            format!("/api/consultations?day={day}"),
        ),
        (
            "/api/consultations/{id}",
            format!("/api/consultations/{consultation}"),
        ),
        (
            "/api/consultations/{id}/journal",
            format!("/api/consultations/{consultation}/journal"),
        ),
        ("/api/billing", format!("/api/billing?from={day}&to={day}")),
        (
            "/api/patients/{id}/export",
            format!("/api/patients/{pid}/export"),
        ),
        (
            "/api/patients/{id}/access-log",
            format!("/api/patients/{pid}/access-log"),
        ),
        (
            "/api/patients/{id}/history",
            format!("/api/patients/{pid}/history"),
        ),
        (
            "/api/clinic/privacy-notice",
            "/api/clinic/privacy-notice".into(),
        ),
        (
            "/api/clinic/records-of-processing",
            "/api/clinic/records-of-processing".into(),
        ),
        (
            "/api/security/export",
            format!("/api/security/export?from={day}&to={day}"),
        ),
    ];
    let mut samples = Vec::new();
    for (template, path) in &gets {
        let body = admin.get_ok(path).await;
        samples.push(sample(
            &format!("GET {path}"),
            &response_schema(template, "get", 200, "application/json"),
            &body,
        ));
    }
    let billing = admin
        .get_ok(&format!("/api/billing?from={day}&to={day}"))
        .await;
    assert_eq!(
        billing["lines"].as_array().unwrap().len(),
        1,
        "a line to check"
    );
    samples.push(sample(
        "GET /api/join/{token}",
        &response_schema("/api/join/{token}", "get", 200, "application/json"),
        &join,
    ));
    samples.push(sample(
        "ice servers",
        &response_schema(
            "/api/join/{token}/ice-servers",
            "get",
            200,
            "application/json",
        ),
        &ice,
    ));
    samples.push(sample(
        "privacy notice",
        &response_schema("/api/join/{token}/privacy", "get", 200, "application/json"),
        &join_privacy,
    ));
    samples.push(sample(
        "completion",
        &response_schema(
            "/api/consultations/{id}/complete",
            "post",
            200,
            "application/json",
        ),
        &completion,
    ));
    // Errors are problem details as documented.
    let (status, missing) = admin
        .get(&format!("/api/patients/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    samples.push(sample(
        "404",
        &response_schema("/api/patients/{id}", "get", 404, "application/problem+json"),
        &missing,
    ));
    let (status, refused) = Client::new(&app.base)
        .post("/api/patients", json!({"name": "x"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    samples.push(sample(
        "401",
        &response_schema("/api/patients", "post", 401, "application/problem+json"),
        &refused,
    ));
    // The export also against the schema file itself.
    let export = admin.get_ok(&format!("/api/patients/{pid}/export")).await;
    samples.push(sample(
        "export (schema file)",
        "docs/patient-export.schema.json",
        &export,
    ));

    let doc = served_document(&app).await;
    let (ok, output) = check_openapi(&doc, &samples);
    println!("{output}");
    assert!(ok, "responses differ from the document:\n{output}");
    assert!(
        output.contains(&format!("{} sample(s) checked", samples.len())),
        "{output}"
    );
    app.stop().await;
}
