//! The web UI, served by the gateway itself: `/` is the page, `/ui/*` its
//! assets. The assets are compiled into the binary (no build step, no files
//! to deploy, works offline); the page talks only to `/api/v1`.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("snippets.js", JS),
    asset!("views/endpoints.js", JS),
    asset!("views/endpoint_form.js", JS),
    asset!("views/plugins.js", JS),
    asset!("views/keys.js", JS),
    asset!("views/usage.js", JS),
];

/// Everything is same-origin: no CDN, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The UI routes; stateless, so they merge into any router.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, request_headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let asset = &ASSETS[index];
    let etag = etag(index);
    // `no-cache` + ETag: browsers revalidate, so a new binary's UI shows up
    // at once, while an unchanged asset costs a 304.
    let mut response = if request_headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// Strong ETag of an asset, hashed once per process.
fn etag(index: usize) -> &'static str {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..32]))
            .collect()
    });
    etags.get(index).map(String::as_str).unwrap_or("\"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.path == path).unwrap();
        std::str::from_utf8(asset.body).unwrap()
    }

    /// Relative module specifiers (`from "./x.js"`) of a JS asset,
    /// resolved against the asset's own folder.
    fn imports(path: &str) -> Vec<String> {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        text(path)
            .split("from \"")
            .skip(1)
            .filter_map(|rest| rest.split_once('"').map(|(spec, _)| spec))
            .filter(|spec| spec.starts_with("./") || spec.starts_with("../"))
            .map(|spec| {
                let mut segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            segments.pop();
                        }
                        s => segments.push(s),
                    }
                }
                segments.join("/")
            })
            .collect()
    }

    #[test]
    fn every_referenced_asset_is_embedded() {
        let html = text("index.html");
        for reference in html.split('"').filter(|s| s.starts_with("/ui/")) {
            let path = reference.trim_start_matches("/ui/");
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "index.html references {reference}, which is not embedded"
            );
        }
        let mut checked = 0;
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for import in imports(asset.path) {
                checked += 1;
                assert!(
                    ASSETS.iter().any(|a| a.path == import),
                    "{} imports {import}, which is not embedded",
                    asset.path
                );
            }
        }
        // The scan itself works: the app's entry module has imports.
        assert!(imports("app.js").len() >= 4, "{:?}", imports("app.js"));
        assert!(checked > 10);
    }

    #[tokio::test]
    async fn serves_the_page_and_assets_with_types_and_etags() {
        let response = index(HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            response
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );

        let response = asset(Path("views/plugins.js".into()), HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JS);
        let etag = response.headers()[header::ETAG].clone();

        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, etag);
        let response = asset(Path("views/plugins.js".into()), conditional).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        for path in ["nope.js", "../Cargo.toml", "", "views"] {
            let response = asset(Path(path.into()), HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}
