//! The web client: the patient's join page, the public rehearsal page and
//! the therapist's dashboard, plain ES modules and CSS from `web-client/`,
//! embedded in the binary.
//!
//! Routes:
//! - `/` redirects to `/app`;
//! - `/app` and `/app/*` answer `web-client/app.html` (the dashboard routes
//!   itself on the client);
//! - `/join/{token}` answers `web-client/join.html`; the page reads the token
//!   from its own address, so no server-side templating ever touches it;
//! - [`REHEARSAL_PATH`] (`/proeve`) and `/rehearsal` answer
//!   `web-client/rehearsal.html`, where anyone can try camera, microphone
//!   and connection before the day: no token, no consultation, nothing
//!   stored; a query string is ignored like on any static file;
//! - `/static/*` answers the files under `web-client/static/` with their
//!   content type, an `ETag` and `Cache-Control: no-cache` (the file names
//!   carry no version, so browsers revalidate and get `304 Not Modified`).
//!
//! Release builds embed the files; debug builds read them from the source
//! tree (rust-embed's default), so a reload shows an edited file at once.
//! The security headers (CSP without inline script) come from
//! [`crate::security`], applied to every response.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::error::ApiError;

/// The files of `web-client/`.
#[derive(RustEmbed)]
#[folder = "../../web-client/"]
#[exclude = "*.md"]
struct Assets;

/// The dashboard page.
const APP_PAGE: &str = "app.html";
/// The patient's join page.
const JOIN_PAGE: &str = "join.html";
/// The rehearsal page: camera, microphone and connection, without a link.
const REHEARSAL_PAGE: &str = "rehearsal.html";

/// Where the rehearsal page is (Danish, as the invitation names it);
/// `/rehearsal` answers it too.
pub const REHEARSAL_PATH: &str = "/proeve";

/// The routes of the web client, to merge into the application router.
/// They need no application state.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(|| async { Redirect::to("/app") }))
        .route("/app", get(app_page))
        .route("/app/", get(app_page))
        .route("/app/{*rest}", get(app_page))
        .route("/join/{token}", get(join_page))
        .route(REHEARSAL_PATH, get(rehearsal_page))
        .route("/rehearsal", get(rehearsal_page))
        .route("/static/{*path}", get(static_file))
}

async fn app_page(headers: HeaderMap) -> Response {
    serve(APP_PAGE, &headers)
}

async fn join_page(Path(_token): Path<String>, headers: HeaderMap) -> Response {
    serve(JOIN_PAGE, &headers)
}

async fn rehearsal_page(headers: HeaderMap) -> Response {
    serve(REHEARSAL_PAGE, &headers)
}

async fn static_file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // rust-embed only knows the embedded names, so `..` cannot escape the
    // folder; refusing it anyway keeps the answer a plain 404.
    if path.split('/').any(|seg| seg.is_empty() || seg == "..") {
        return ApiError::NotFound("file").into_response();
    }
    serve(&format!("static/{path}"), &headers)
}

/// Answers one embedded file, or 304 when the browser's copy is current.
fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(name) else {
        return ApiError::NotFound("file").into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    (StatusCode::OK, headers, file.data.into_owned()).into_response()
}

/// A strong entity tag from the file's SHA-256.
fn etag(hash: &[u8; 32]) -> String {
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The content type of a web-client file, by extension. The client uses
/// only these kinds; anything else is served as opaque bytes.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(uri: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    async fn body(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn root_redirects_to_the_dashboard() {
        let res = get("/", None).await;
        assert!(res.status().is_redirection());
        assert_eq!(res.headers()[header::LOCATION], "/app");
    }

    #[tokio::test]
    async fn dashboard_paths_answer_the_app_page() {
        for uri in ["/app", "/app/", "/app/patients/123", "/app/setup"] {
            let res = get(uri, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{uri}");
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "text/html; charset=utf-8"
            );
            assert!(body(res).await.contains("/static/js/app.js"), "{uri}");
        }
    }

    #[tokio::test]
    async fn join_links_answer_the_join_page_without_the_token() {
        let res = get("/join/secret-token-123", None).await;
        assert_eq!(res.status(), StatusCode::OK);
        let text = body(res).await;
        assert!(text.contains("/static/js/join.js"));
        assert!(!text.contains("secret-token-123"));
    }

    #[tokio::test]
    async fn the_rehearsal_page_answers_at_both_addresses_without_a_token() {
        for uri in ["/proeve", "/rehearsal", "/proeve?token=secret-token-123"] {
            let res = get(uri, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{uri}");
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "text/html; charset=utf-8"
            );
            let text = body(res).await;
            assert!(text.contains("/static/js/rehearsal.js"), "{uri}");
            assert!(!text.contains("secret-token-123"), "{uri}");
        }
        // The page is one address: nothing after it is a token.
        assert_eq!(
            get("/proeve/secret-token-123", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn static_files_have_type_etag_and_revalidate() {
        let res = get("/static/js/i18n.js", None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");
        let tag = res.headers()[header::ETAG]
            .to_str()
            .expect("ascii")
            .to_owned();
        let again = get("/static/js/i18n.js", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let css = get("/static/css/konsult.css", None).await;
        assert_eq!(
            css.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn unknown_and_escaping_paths_are_not_found() {
        for uri in [
            "/static/nope.js",
            "/static/../app.html",
            "/static/js//i18n.js",
            "/static/app.html",
        ] {
            assert_eq!(
                get(uri, None).await.status(),
                StatusCode::NOT_FOUND,
                "{uri}"
            );
        }
    }

    #[test]
    fn pages_and_modules_are_embedded() {
        for name in [
            APP_PAGE,
            JOIN_PAGE,
            REHEARSAL_PAGE,
            "static/css/konsult.css",
            "static/js/i18n.js",
        ] {
            assert!(Assets::get(name).is_some(), "{name} is missing");
        }
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        // The CSP forbids them; a page that used them would break silently.
        for name in Assets::iter().filter(|n| n.ends_with(".html")) {
            let file = Assets::get(&name).expect("listed file exists");
            let text = std::str::from_utf8(&file.data).expect("pages are UTF-8");
            assert!(!text.contains(" style=\""), "{name} has a style attribute");
            assert!(!text.contains(" onclick="), "{name} has an event attribute");
            for (i, _) in text.match_indices("<script") {
                let tag = &text[i..text[i..].find('>').map_or(text.len(), |e| i + e)];
                assert!(tag.contains("src="), "{name} has an inline script");
            }
            assert!(!text.contains("<style"), "{name} has an inline style block");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name} refers to an external resource"
            );
        }
    }

    #[test]
    fn the_client_never_records() {
        // Datatilsynet: a recording needs its own basis and retention.
        // Konsult has none, so no page may record audio, video or the screen.
        // The therapist's screen sharing sends the screen live into the
        // call, like the camera; only the device module may open it.
        let mut scripts = 0;
        for name in Assets::iter().filter(|n| n.ends_with(".js")) {
            let file = Assets::get(&name).expect("listed file exists");
            let text = std::str::from_utf8(&file.data).expect("modules are UTF-8");
            for api in ["MediaRecorder", "captureStream", "ImageCapture"] {
                assert!(!text.contains(api), "{name} uses {api}");
            }
            if name.as_ref() != "static/js/devices.js" {
                assert!(!text.contains("getDisplayMedia"), "{name} opens the screen");
            }
            scripts += 1;
        }
        assert!(scripts >= 10, "only {scripts} modules checked");
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("static/js/call.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("static/css/konsult.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type("app.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("static/img/logo.svg"), "image/svg+xml");
        assert_eq!(content_type("static/x"), "application/octet-stream");
    }
}
