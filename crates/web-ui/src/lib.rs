//! The web UI that `onyx server` serves at `/`: static pages and scripts in `assets/`,
//! embedded in the binary at build time (nothing is loaded from the internet at run time).
//! The pages talk to the same Argo API as every other client, with the same bearer token,
//! so the UI holds no data and needs no authentication of its own: serving it is serving
//! files. Front-end libraries come from npm through `package-lock.json`; `npm ci && npm run
//! vendor` copies them into `assets/vendor/`, which is committed, so `cargo build` is the only
//! command a user types.

#![forbid(unsafe_code)]

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// `/` (the page) and `/ui/…` (its scripts, styles and libraries).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(asset))
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_string()),
                // Assets change with the binary: revalidate rather than serve a stale page.
                (header::CACHE_CONTROL, "no-cache".to_string()),
            ],
            file.data,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the UI has no file {path:?}"),
        )
            .into_response(),
    }
}

/// Every embedded file's path, for tests and for checking that nothing is fetched from
/// elsewhere.
pub fn files() -> Vec<String> {
    Assets::iter().map(|p| p.to_string()).collect()
}

/// An embedded file's bytes.
pub fn file(path: &str) -> Option<Vec<u8>> {
    Assets::get(path).map(|f| f.data.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_in_the_pages_is_to_an_embedded_file() {
        let files = files();
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        for f in files
            .iter()
            .filter(|f| f.ends_with(".html") || f.ends_with(".js"))
        {
            let text = String::from_utf8(file(f).unwrap()).unwrap();
            // The SVG namespace is a name, not an address anything is loaded from.
            let text = text.replace("'http://www.w3.org/2000/svg'", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") || f.starts_with("vendor/"),
                "{f} refers to another site: the UI must load nothing from the internet"
            );
            for (at, _) in text.match_indices("/ui/") {
                let rest = &text[at + 4..];
                let end = rest
                    .find(|c: char| c == '"' || c == '\'' || c == '`' || c.is_whitespace())
                    .unwrap_or(rest.len());
                let target = &rest[..end];
                if !target.is_empty() && !target.contains('$') {
                    assert!(
                        files.iter().any(|x| x == target),
                        "{f} loads /ui/{target}, which is not embedded"
                    );
                }
            }
        }
    }
}
