//! The public rehearsal page, `/proeve` (also `/rehearsal`): anyone gets
//! it, with the join page's security headers; a token in its address is
//! ignored; and neither the page nor the checks it makes (`/healthz`, a
//! WebSocket closed before any hello) touch a consultation, a join link or
//! the audit log.

use crate::common;

use chrono::Duration;
use common::signal::{book, clinic, connect, next, Next};
use common::{Db, TestApp};

/// The headers the join page is served with, which the rehearsal page
/// must have too (it opens camera and microphone the same way).
const PAGE_HEADERS: [&str; 8] = [
    "content-type",
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "permissions-policy",
    "cross-origin-opener-policy",
    "cache-control",
];

#[tokio::test]
async fn the_rehearsal_page_is_public_and_touches_nothing() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    // A consultation tomorrow: its link is not open yet, as on the days
    // a patient would rehearse.
    let b = book(&app, &fx, Duration::days(1), true).await;
    let store = &app.state.store;
    let audit = || async { store.audit_entries(fx.clinic, 0, 10_000).await.unwrap() };
    let link_before = store.link_status(&b.token, app.now()).await.unwrap();
    let audit_before = audit().await;

    let http = reqwest::Client::new();
    let join = http
        .get(format!("{}/join/{}", app.base, b.token))
        .send()
        .await
        .unwrap();
    assert_eq!(join.status(), 200);
    let mut page = None;
    for path in [
        "/proeve".to_owned(),
        "/rehearsal".to_owned(),
        format!("/proeve?token={}", b.token),
        format!("/rehearsal?link_token={}&lang=en", b.token),
    ] {
        let res = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        for name in PAGE_HEADERS {
            let got = res.headers().get(name);
            assert!(got.is_some(), "{path} has no {name}");
            assert_eq!(got, join.headers().get(name), "{name} of {path}");
        }
        let body = res.text().await.unwrap();
        assert!(body.contains("/static/js/rehearsal.js"), "{path}");
        assert!(!body.contains(&b.token), "{path} repeats the token");
        // One page, whatever the address carries.
        assert_eq!(page.get_or_insert_with(|| body.clone()), &body, "{path}");
    }
    // Nothing after the page's address is read as a token.
    let res = http
        .get(format!("{}/proeve/{}", app.base, b.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // The page's connection check: /healthz, and /ws opened and closed
    // before any hello. The server answers the close and nothing else.
    let health = http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let mut ws = connect(&app, None).await;
    ws.close(None).await.unwrap();
    assert!(
        matches!(next(&mut ws).await, Next::Closed(_)),
        "the server sends nothing to a socket closed before its hello"
    );

    assert_eq!(
        store.link_status(&b.token, app.now()).await.unwrap(),
        link_before
    );
    let audit_after = audit().await;
    assert_eq!(
        audit_after.len(),
        audit_before.len(),
        "new audit entries: {:?}",
        audit_after[audit_before.len()..]
            .iter()
            .map(|e| &e.action)
            .collect::<Vec<_>>()
    );
    assert!(store
        .call_events(fx.clinic, b.consultation)
        .await
        .unwrap()
        .is_empty());

    // The same audit count does move when the link itself is looked up,
    // so the check above can fail.
    let info = http
        .get(format!("{}/api/join/{}", app.base, b.token))
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    assert_eq!(audit().await.len(), audit_before.len() + 1);
    app.stop().await;
}
