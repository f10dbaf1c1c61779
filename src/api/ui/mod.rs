//! The experts' review page at `/ui`: plain HTML, CSS and JavaScript embedded
//! in the binary (no build step, nothing fetched from elsewhere). The page is
//! only a client of the public JSON API: it holds no review logic, so what it
//! shows is what the API answers.
//!
//! Every path under `/ui` that is not an asset answers the page itself, so
//! deep links (`/ui/projects/3/review?strategy=margin`) work on reload. The
//! content security policy allows scripts, styles and requests from this
//! origin only, no inline script, and images from this origin or the blob
//! URLs the page makes from `GET /v1/items/{id}/content` (fetched with the
//! token, which an `<img src>` could not send). A speech project's review
//! draws the waveform from `GET /v1/items/{id}/peaks` and plays the sound
//! through a short-lived signed link (`GET /v1/items/{id}/content-link`),
//! which the `<audio>` element fetches in byte ranges as it seeks: see
//! `api::v1::content` for why a link and not a cookie or a blob.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

use super::error::ApiError;
use super::AppState;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/icon.svg"),
    },
];

/// No inline script or style, nothing from another origin, no framing.
/// Sound plays from this origin only: the signed content links.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; media-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page's routes (not in the OpenAPI document: they are not the API).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/{*rest}", get(page))
}

/// A strong validator per asset: the embedded bytes change only with the
/// binary, so `If-None-Match` saves the transfer and a new build is never
/// served stale.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.body);
                format!(
                    "\"{}\"",
                    d.iter()
                        .take(12)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                )
            })
            .collect()
    });
    tags.get(i).map(String::as_str).unwrap_or("\"\"")
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let a = &ASSETS[i];
    let tag = etag(i);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time: cheap with the ETag, and a deploy shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

async fn page(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(i, &headers),
        None => ApiError::not_found(format!("asset {name:?}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("style="), "no inline style");
        assert!(!html.contains("http://") && !html.contains("https://"));
        for a in &ASSETS[1..] {
            assert!(
                html.contains(&format!("/ui/assets/{}", a.name)),
                "{}",
                a.name
            );
        }
        let js = std::str::from_utf8(ASSETS[1].body).unwrap();
        assert!(
            !js.contains("localStorage"),
            "the token stays in sessionStorage"
        );
    }
}
