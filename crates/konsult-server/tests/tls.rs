//! Under TLS (rustls): HTTPS with the configured certificate, HSTS, and
//! Secure session cookies. A non-loopback listener without a certificate
//! gets a generated self-signed one.

use crate::common;

use common::*;

#[tokio::test]
async fn serves_https_with_hsts_and_secure_cookies() {
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
    assert!(
        app.base.starts_with("http://"),
        "the harness builds an http URL"
    );
    let https = app.base.replace("http://", "https://");
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap(),
        )
        .use_rustls_tls()
        .build()
        .unwrap();
    let res = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));

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
                password_hash: konsult_server::auth::hash_password(common::ADMIN_PASSWORD).unwrap(),
                role: konsult_store::therapists::Role::Admin,
            },
            app.now(),
        )
        .await
        .unwrap();
    let res = client
        .post(format!("{https}/api/login"))
        .json(&serde_json::json!({"email": "tls@klinik.dk", "password": common::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_public_listener_generates_a_private_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    // Not bound here: only the certificate is prepared.
    settings.listen = "0.0.0.0:8443".parse().unwrap();
    assert!(settings.serves_tls());
    konsult_server::startup::tls_config(&settings)
        .await
        .unwrap();
    for file in ["self-signed-cert.pem", "self-signed-key.pem"] {
        let path = dir.path().join(file);
        assert!(path.exists(), "{file}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
    // A second start reuses it.
    let before = std::fs::read(dir.path().join("self-signed-cert.pem")).unwrap();
    konsult_server::startup::tls_config(&settings)
        .await
        .unwrap();
    assert_eq!(
        before,
        std::fs::read(dir.path().join("self-signed-cert.pem")).unwrap()
    );
}

#[tokio::test]
async fn plain_http_on_a_public_address_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.listen = "0.0.0.0:0".parse().unwrap();
    settings.tls.cert = Some(dir.path().join("missing.pem"));
    let err = konsult_server::startup::check_listen(&settings).unwrap_err();
    assert!(err.to_string().contains("tls.cert and tls.key"), "{err}");
}
