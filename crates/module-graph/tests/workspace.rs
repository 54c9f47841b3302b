//! The workspace's structure rules, read from its code: no import loop between the files of
//! any crate (each root: library, binary, tests, benches), no source file over 1,000 lines,
//! and no crate's `src/` over 4,000 lines but the one still being split, each held to the
//! size it has (a ratchet). A failure names the files and what to do.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1000;

/// Lines of a crate's `src/`, its own tests in it included.
const MAX_CRATE_LINES: usize = 4000;

/// Crates over [`MAX_CRATE_LINES`] and the most each may have until it is split: a crate may
/// shrink under its ceiling, never grow past it; one under the limit leaves this list.
const OVER_LIMIT: [(&str, usize); 1] = [
    // The engine is one state machine (`impl Engine` across its files); a split needs its
    // template kinds (DAG, steps, loops) behind an interface of their own first.
    ("workflow-engine", 7100),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn packages() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .expect("the workspace has a crates/ folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn no_crate_has_an_import_loop_between_its_files() {
    let mut problems = Vec::new();
    let mut roots = 0;
    for package in packages() {
        for root in module_graph::crate_roots(&package) {
            roots += 1;
            let graph = module_graph::read_crate(&root).unwrap_or_else(|e| panic!("{e}"));
            for ring in graph.loops() {
                let files: Vec<String> = ring.iter().map(|p| short(p)).collect();
                let edges: Vec<String> = ring
                    .iter()
                    .flat_map(|a| {
                        graph
                            .imports_of(a)
                            .into_iter()
                            .filter(|b| ring.contains(b))
                            .map(move |b| format!("{} → {}", short(a), short(b)))
                    })
                    .collect();
                problems.push(format!(
                    "{}: these files import each other: {}\n    ({})",
                    short(&root),
                    files.join(", "),
                    edges.join("; ")
                ));
            }
        }
    }
    assert!(roots > 10, "found only {roots} crate roots under crates/");
    assert!(
        problems.is_empty(),
        "import loops (move what both sides need into a module that imports neither):\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_source_file_is_over_1000_lines() {
    let mut long = Vec::new();
    let mut seen = 0;
    for package in packages() {
        let mut stack = vec![package];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    seen += 1;
                    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                    if lines > MAX_LINES {
                        long.push(format!("{} ({lines} lines)", short(&path)));
                    }
                }
            }
        }
    }
    assert!(seen > 50, "found only {seen} source files under crates/");
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines (split them by concept): {}",
        long.join(", ")
    );
}

fn rust_lines(dir: &Path) -> usize {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                total += std::fs::read_to_string(&path).unwrap().lines().count();
            }
        }
    }
    total
}

#[test]
fn no_crate_is_over_4000_lines_and_none_listed_over_it_grows() {
    let mut problems = Vec::new();
    for package in packages() {
        let name = package.file_name().unwrap().to_string_lossy().to_string();
        let lines = rust_lines(&package.join("src"));
        match OVER_LIMIT.iter().find(|(n, _)| *n == name) {
            Some((_, ceiling)) if lines > *ceiling => problems.push(format!(
                "{name} has {lines} lines, more than its ceiling of {ceiling}: move a concept out into a crate of its own rather than grow it"
            )),
            Some(_) if lines <= MAX_CRATE_LINES => problems.push(format!(
                "{name} has {lines} lines, within {MAX_CRATE_LINES}: take it off OVER_LIMIT"
            )),
            None if lines > MAX_CRATE_LINES => problems.push(format!(
                "{name} has {lines} lines, over {MAX_CRATE_LINES}: split it along a seam into crates of one purpose each"
            )),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn short(p: &Path) -> String {
    let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let ws = workspace().canonicalize().unwrap();
    p.strip_prefix(&ws).unwrap_or(&p).display().to_string()
}
