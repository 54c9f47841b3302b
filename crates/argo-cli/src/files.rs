//! What the client reads from and writes to disk: manifests, and artifacts saved or copied.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

use super::api::Api;

/// Write a download to `target`.
pub(super) fn save(r: ureq::Response, target: &Path) -> anyhow::Result<()> {
    let mut out =
        std::fs::File::create(target).with_context(|| format!("creating {}", target.display()))?;
    std::io::copy(&mut r.into_reader(), &mut out)
        .with_context(|| format!("writing {}", target.display()))?;
    println!("Created {}", target.display());
    Ok(())
}

/// Copy what `/artifact-files` serves at `path` to `target`: a file, or (an HTML listing, as
/// Argo's server writes it for a directory) every file below. Returns how many files.
pub(super) fn copy_tree(api: &Api, path: &str, target: &Path) -> anyhow::Result<usize> {
    let r = api.call("GET", path, None)?;
    let is_listing = r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html"));
    if !is_listing {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        save(r, target)?;
        return Ok(1);
    }
    let html = r.into_string()?;
    std::fs::create_dir_all(target)?;
    let mut n = 0;
    for entry in html.split("<a href=\"").skip(1) {
        let Some(href) = entry.split('"').next() else {
            continue;
        };
        // The server's links are `./NAME` or `./NAME/`, NAME percent-encoded.
        let href = href.strip_prefix("./").unwrap_or(href);
        let Some(name) = access::decoded_path(href.trim_end_matches('/')) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let dir = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        n += copy_tree(api, &format!("{dir}{href}"), &target.join(&name))?;
    }
    Ok(n)
}

/// Read objects from files (YAML or JSON, several documents each) as JSON.
pub(super) fn read_objects(files: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for f in files {
        let text = if f == Path::new("-") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        };
        let (loaded, diags) = workflow_model::load_str(&f.display().to_string(), &text);
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == workflow_model::Severity::Error)
            .map(|d| d.to_string())
            .collect();
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        for l in loaded {
            out.push(match l.object {
                workflow_model::Object::Workflow(w)
                | workflow_model::Object::WorkflowTemplate(w)
                | workflow_model::Object::ClusterWorkflowTemplate(w) => w.raw,
                workflow_model::Object::CronWorkflow(c) => c.raw,
                workflow_model::Object::Other(o) => o.raw,
            });
        }
    }
    if out.is_empty() {
        bail!(
            "no objects in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}
