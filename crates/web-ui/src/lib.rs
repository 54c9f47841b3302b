//! The web UI that `onyx server` serves at `/`: static pages and scripts in `assets/`,
//! embedded in the binary at build time (nothing is loaded from the internet at run time).
//! The pages talk to the same Argo API as every other client, with the same bearer token,
//! so the UI holds no data and needs no authentication of its own: serving it is serving
//! files. Front-end libraries come from npm through `package-lock.json`; `npm ci && npm run
//! vendor` copies them into `assets/vendor/`, which is committed, so `cargo build` is the only
//! command a user types.

#![forbid(unsafe_code)]

use axum::extract::Path;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// `/` (the page), `/ui/…` (its scripts, styles and libraries), and Argo UI's addresses.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(asset));
    for prefix in ARGO_PAGES {
        r = r
            .route(&format!("/{prefix}"), get(argo_page))
            .route(&format!("/{prefix}/{{*rest}}"), get(argo_page));
    }
    r
}

/// The first segments of Argo UI's own addresses, which users bookmark and paste.
const ARGO_PAGES: [&str; 5] = [
    "workflows",
    "workflow-templates",
    "cluster-workflow-templates",
    "cron-workflows",
    "archived-workflows",
];

/// An Argo UI address (`/workflows/NS/NAME?nodeId=ID`, `/workflow-templates/NS/NAME`, ...)
/// answered with a redirect to the page of this UI that shows the same thing, so that no
/// browser that follows such a link sees the API's JSON.
async fn argo_page(uri: Uri) -> Response {
    match page_for(uri.path(), uri.query()) {
        Some(to) => Redirect::to(&to).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no page at {}; the UI is at /", uri.path()),
        )
            .into_response(),
    }
}

/// This UI's address (`/#/…`) for an Argo UI path and query; `None` for a path Argo's UI does
/// not have. Segments stay percent-encoded as they came (the page decodes them).
pub fn page_for(path: &str, query: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.iter().skip(1).any(|p| p.is_empty()) {
        return None;
    }
    let node = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| {
        kv.strip_prefix("nodeId=").filter(|id| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
    });
    Some(match parts.as_slice() {
        ["workflows"] => "/#/workflows".into(),
        ["workflows", ns] => format!("/#/workflows?namespace={ns}"),
        ["workflows", ns, name] => match node {
            Some(id) => format!("/#/workflows/{ns}/{name}?node={id}"),
            None => format!("/#/workflows/{ns}/{name}"),
        },
        ["workflow-templates" | "cron-workflows" | "cluster-workflow-templates"]
        | ["workflow-templates" | "cron-workflows", _] => "/#/catalog".into(),
        ["workflow-templates", ns, name] => format!("/#/submit/workflowtemplate/{ns}/{name}"),
        ["cron-workflows", ns, name] => format!("/#/submit/cronworkflow/{ns}/{name}"),
        ["cluster-workflow-templates", name] => {
            format!("/#/submit/clusterworkflowtemplate/-/{name}")
        }
        ["archived-workflows"] | ["archived-workflows", _] => "/#/archive".into(),
        ["archived-workflows", _, uid] => format!("/#/archive/{uid}"),
        _ => return None,
    })
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

    #[test]
    fn argo_addresses_lead_to_the_page_that_shows_the_same_thing() {
        let cases = [
            ("/workflows", None, "/#/workflows"),
            ("/workflows/team-a", None, "/#/workflows?namespace=team-a"),
            (
                "/workflows/team-a/train-x7",
                None,
                "/#/workflows/team-a/train-x7",
            ),
            (
                "/workflows/team-a/train-x7",
                Some("tab=workflow&nodeId=train-x7-123"),
                "/#/workflows/team-a/train-x7?node=train-x7-123",
            ),
            ("/workflow-templates/team-a", None, "/#/catalog"),
            (
                "/workflow-templates/team-a/etl",
                None,
                "/#/submit/workflowtemplate/team-a/etl",
            ),
            (
                "/cluster-workflow-templates/base",
                None,
                "/#/submit/clusterworkflowtemplate/-/base",
            ),
            (
                "/cron-workflows/team-a/nightly",
                None,
                "/#/submit/cronworkflow/team-a/nightly",
            ),
            (
                "/archived-workflows/team-a/0b5d-uid",
                None,
                "/#/archive/0b5d-uid",
            ),
            ("/archived-workflows", None, "/#/archive"),
        ];
        for (path, query, to) in cases {
            assert_eq!(page_for(path, query).as_deref(), Some(to), "{path}");
        }
        assert_eq!(page_for("/workflows/a/b/c", None), None);
        assert_eq!(page_for("/workflows//b", None), None);
        // A node id that is not one is dropped rather than carried into the page's address.
        assert_eq!(
            page_for("/workflows/a/b", Some("nodeId=%22%3E")).as_deref(),
            Some("/#/workflows/a/b")
        );
    }
}
