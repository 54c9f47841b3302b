//! The workspace's structure rules, read from its code: no import loop between the files of
//! any crate (each root: library, binary, tests, benches), and no source file over 1,000
//! lines. A failure names the files and what to do.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1000;

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

fn short(p: &Path) -> String {
    let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let ws = workspace().canonicalize().unwrap();
    p.strip_prefix(&ws).unwrap_or(&p).display().to_string()
}
