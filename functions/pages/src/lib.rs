//! The fan's page (`/`) and the operator's console (`/console`), with their scripts and
//! style under `/assets/`. The files are built into the component, so it needs no file
//! mounts, runs the same under Spin and under `edge`, and a deployment serves exactly the
//! pages its API was built with.
//!
//! Every answer carries a strong `ETag` (the file's content hash) and `Cache-Control:
//! no-cache`: browsers and CDNs keep a copy but revalidate it, and a revalidation of an
//! unchanged file is a body-less `304`. The pages load nothing from elsewhere, which the
//! `Content-Security-Policy` holds them to.

use std::sync::OnceLock;

use http_kit::Reply;
use spin_sdk::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use ticketing_core::ApiError;

http_kit::serve!(route);

/// A file served at `path`.
struct Page {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// A page: its path, its content type and its file under `www/`.
macro_rules! page {
    ($path:literal, $content_type:expr, $file:literal) => {
        Page {
            path: $path,
            content_type: $content_type,
            body: include_str!(concat!("../www/", $file)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const PAGES: [Page; 6] = [
    page!("/", HTML, "index.html"),
    page!("/console", HTML, "console.html"),
    page!("/assets/api.js", JS, "assets/api.js"),
    page!("/assets/fan.js", JS, "assets/fan.js"),
    page!("/assets/console.js", JS, "assets/console.js"),
    page!(
        "/assets/style.css",
        "text/css; charset=utf-8",
        "assets/style.css"
    ),
];

/// Same-origin scripts, styles, images and API calls only; no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn route(request: Request) -> Result<Reply, ApiError> {
    http_kit::only(&request, Method::GET)?;
    let path = request.uri().path();
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let (index, page) = PAGES
        .iter()
        .enumerate()
        .find(|(_, page)| page.path == path)
        .ok_or_else(|| http_kit::no_route(&request))?;
    let etag = etags()[index].as_str();
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert("etag", value);
    }
    let unchanged = request
        .headers()
        .get_all("if-none-match")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, headers, String::new()));
    }
    headers.insert("content-type", HeaderValue::from_static(page.content_type));
    headers.insert("content-length", HeaderValue::from(page.body.len()));
    Ok((StatusCode::OK, headers, page.body.to_owned()))
}

/// Each page's entity tag: 64-bit FNV-1a of its bytes, computed once per instance.
fn etags() -> &'static [String; PAGES.len()] {
    static ETAGS: OnceLock<[String; PAGES.len()]> = OnceLock::new();
    ETAGS.get_or_init(|| {
        PAGES.each_ref().map(|page| {
            let hash = page
                .body
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                    (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
                });
            format!("\"{hash:016x}\"")
        })
    })
}
