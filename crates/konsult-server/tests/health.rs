//! The server starts on port 0 and answers its health check.

use konsult_server::{Application, Settings};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = Application::build(Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));

    let body: serde_json::Value = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok");
}
