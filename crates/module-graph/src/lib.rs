//! The import graph between the source files of one crate, read from the code with `syn`.
//!
//! A file imports another when it names an item of a module that lives in the other file:
//! in a `use` (`use crate::config::Config`, `use super::*`) or in a path anywhere in its code
//! (`crate::config::load(..)`, `child::run()`). Declaring a child (`mod child;`) is not an
//! import, and neither is re-exporting one's item (`pub use engine::Engine` in `lib.rs`):
//! that is the crate's facade, not code of the file that depends on the child. A name that a
//! module brings in with a `use` is followed to the module it comes from, so reaching an
//! item through the facade (`crate::Engine`) is an import of `engine`, not of `lib.rs`. Inside macro invocations (`format!("{}", crate::x::f())`)
//! the tokens are read for `a::b` paths too, since they are code once expanded.
//!
//! [`CrateGraph::loops`] lists the groups of files that import each other, directly or
//! around a ring: the workspace's test refuses any. Reading never panics on a file; a file
//! that does not parse is an error naming its path, line and column.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Why a crate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{declared_in}: `mod {name};` has no file (looked for {})", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    MissingModule {
        declared_in: PathBuf,
        name: String,
        tried: Vec<PathBuf>,
    },
}

/// One source file of a crate and the module it holds (`[]` for the crate root).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub module: Vec<String>,
    pub lines: usize,
}

/// The files of one crate (from one root: `lib.rs`, `main.rs`, a test or a bench) and which
/// imports which.
#[derive(Debug)]
pub struct CrateGraph {
    pub files: Vec<SourceFile>,
    /// `(from, to)`: file `from` imports an item of a module in file `to`.
    pub imports: BTreeSet<(usize, usize)>,
}

type ModulePath = Vec<String>;

/// What the first pass learns of one module: its file, and the names its `use` items bring
/// in, with the module path each points into.
#[derive(Debug, Default)]
struct Module {
    file: usize,
    uses: BTreeMap<String, Vec<String>>,
}

impl CrateGraph {
    /// The groups of files that import each other (strongly connected components of more than
    /// one file, or a file importing itself through another module), each listed by path in
    /// order; empty when the imports form no loop.
    pub fn loops(&self) -> Vec<Vec<&Path>> {
        let n = self.files.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(a, b) in &self.imports {
            next[a].push(b);
        }
        let components = strongly_connected(&next);
        let mut out: Vec<Vec<&Path>> = components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut paths: Vec<&Path> =
                    c.iter().map(|&i| self.files[i].path.as_path()).collect();
                paths.sort();
                paths
            })
            .collect();
        out.sort();
        out
    }

    /// The files `file` imports, by path.
    pub fn imports_of(&self, file: &Path) -> Vec<&Path> {
        let Some(i) = self.files.iter().position(|f| f.path == file) else {
            return Vec::new();
        };
        self.imports
            .iter()
            .filter(|(a, _)| *a == i)
            .map(|&(_, b)| self.files[b].path.as_path())
            .collect()
    }
}

/// Tarjan's algorithm, iterative (a deep module chain must not overflow the stack).
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = next.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut counter = 0;
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[v] == usize::MAX {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = next[v].get(*edge) {
                *edge += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

/// The crate roots of a package folder: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`, and each
/// `tests/*.rs`, `benches/*.rs` and `examples/*.rs`.
pub fn crate_roots(package: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for f in ["src/lib.rs", "src/main.rs"] {
        let p = package.join(f);
        if p.is_file() {
            roots.push(p);
        }
    }
    for dir in ["src/bin", "tests", "benches", "examples"] {
        let Ok(entries) = std::fs::read_dir(package.join(dir)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rs") && p.is_file())
            .collect();
        found.sort();
        roots.extend(found);
    }
    roots
}

/// Read the crate whose root file is `root`, following its `mod` declarations.
pub fn read_crate(root: &Path) -> Result<CrateGraph, Error> {
    let mut reader = Reader::default();
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    reader.load(root.to_path_buf(), Vec::new(), dir)?;
    let mut imports = BTreeSet::new();
    for (i, ast) in reader.asts.iter().enumerate() {
        let base = reader.files[i].module.clone();
        let mut refs = References {
            module: base,
            paths: Vec::new(),
        };
        refs.visit_file(ast);
        for (module, path) in refs.paths {
            if let Some(target) = reader.resolve(&module, &path) {
                if target != i {
                    imports.insert((i, target));
                }
            }
        }
    }
    Ok(CrateGraph {
        files: reader.files,
        imports,
    })
}

#[derive(Default)]
struct Reader {
    files: Vec<SourceFile>,
    asts: Vec<syn::File>,
    modules: BTreeMap<ModulePath, Module>,
}

impl Reader {
    /// Parse one file holding `module`; its `mod x;` children live under `children_dir`.
    fn load(
        &mut self,
        path: PathBuf,
        module: ModulePath,
        children_dir: PathBuf,
    ) -> Result<(), Error> {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let ast = syn::parse_file(&text).map_err(|e| {
            let start = e.span().start();
            Error::Parse {
                path: path.clone(),
                line: start.line,
                column: start.column + 1,
                message: e.to_string(),
            }
        })?;
        let file = self.files.len();
        self.files.push(SourceFile {
            path: path.clone(),
            module: module.clone(),
            lines: text.lines().count(),
        });
        let items = ast.items.clone();
        self.asts.push(ast);
        self.scan(&path, file, module, &items, children_dir)
    }

    /// Record the module, its `use` names, and load or scan its child modules.
    fn scan(
        &mut self,
        path: &Path,
        file: usize,
        module: ModulePath,
        items: &[syn::Item],
        children_dir: PathBuf,
    ) -> Result<(), Error> {
        let mut uses = BTreeMap::new();
        for item in items {
            if let syn::Item::Use(u) = item {
                let mut flat = Vec::new();
                flatten_use(&u.tree, &mut Vec::new(), &mut flat);
                for (name, target) in flat {
                    if let Some(name) = name {
                        uses.insert(name, target);
                    }
                }
            }
        }
        self.modules.insert(module.clone(), Module { file, uses });
        for item in items {
            let syn::Item::Mod(m) = item else { continue };
            let name = m.ident.to_string();
            let mut child = module.clone();
            child.push(name.clone());
            let dir = children_dir.join(&name);
            if let Some((_, content)) = &m.content {
                self.scan(path, file, child, content, dir)?;
                continue;
            }
            let base = path.parent().unwrap_or(Path::new("."));
            let tried = match path_attribute(&m.attrs) {
                Some(p) => vec![base.join(p)],
                None => vec![
                    children_dir.join(format!("{name}.rs")),
                    children_dir.join(&name).join("mod.rs"),
                ],
            };
            match tried.iter().find(|p| p.is_file()) {
                Some(p) => {
                    let grandchildren = if p.file_name().is_some_and(|f| f == "mod.rs") {
                        p.parent().unwrap_or(Path::new(".")).to_path_buf()
                    } else {
                        dir
                    };
                    self.load(p.clone(), child, grandchildren)?;
                }
                // A module for another platform or feature may have no file on this one.
                None if m.attrs.iter().any(|a| a.path().is_ident("cfg")) => {}
                None => {
                    return Err(Error::MissingModule {
                        declared_in: path.to_path_buf(),
                        name,
                        tried,
                    })
                }
            }
        }
        Ok(())
    }

    /// The file holding the item `path` names from inside `module`, if it is in this crate.
    /// A name the module only brings in with a `use` is followed to where it comes from.
    fn resolve(&self, module: &[String], path: &[String]) -> Option<usize> {
        let (mut at, mut item) = self.locate(module, path)?;
        for _ in 0..16 {
            let Some(target) = item.as_ref().and_then(|i| self.modules[&at].uses.get(i)) else {
                break;
            };
            match self.locate(&at, target) {
                Some((next, next_item)) if next != at => (at, item) = (next, next_item),
                _ => break,
            }
        }
        Some(self.modules[&at].file)
    }

    /// The module `path` points into from inside `module`, and the item it names there.
    fn locate(&self, module: &[String], path: &[String]) -> Option<(ModulePath, Option<String>)> {
        let first = path.first()?;
        let (base, rest): (ModulePath, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (module.to_vec(), &path[1..]),
            "super" => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                let keep = module.len().checked_sub(supers)?;
                (module[..keep].to_vec(), &path[supers..])
            }
            _ => {
                let mut child = module.to_vec();
                child.push(first.clone());
                if !self.modules.contains_key(&child) {
                    return None; // another crate, or a local item
                }
                (module.to_vec(), path)
            }
        };
        let mut full = base.clone();
        full.extend(rest.iter().cloned());
        // The longest prefix that is a module; what follows it is an item of that module.
        (base.len()..=full.len())
            .rev()
            .find(|&len| self.modules.contains_key(&full[..len]))
            .map(|len| (full[..len].to_vec(), full.get(len).cloned()))
    }
}

fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| {
        if !a.path().is_ident("path") {
            return None;
        }
        let syn::Meta::NameValue(nv) = &a.meta else {
            return None;
        };
        match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        }
    })
}

/// Every path a `use` tree names, with the name it binds (`None` for a glob).
fn flatten_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut path = prefix.clone();
            if name != "self" {
                path.push(name.clone());
            }
            let bound = if name == "self" {
                prefix.last().cloned()
            } else {
                Some(name)
            };
            out.push((bound, path));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((Some(r.rename.to_string()), path));
        }
        syn::UseTree::Glob(_) => out.push((None, prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
    }
}

/// The paths one file names, each with the module it is named in (inline modules count).
struct References {
    module: ModulePath,
    paths: Vec<(ModulePath, Vec<String>)>,
}

impl<'ast> Visit<'ast> for References {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.module.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if !matches!(u.vis, syn::Visibility::Inherited) {
            return; // a re-export
        }
        let mut flat = Vec::new();
        flatten_use(&u.tree, &mut Vec::new(), &mut flat);
        for (_, path) in flat {
            self.paths.push((self.module.clone(), path));
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() > 1 {
            let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.paths.push((self.module.clone(), segments));
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        let mut found = Vec::new();
        paths_in_tokens(m.tokens.clone(), &mut found);
        for path in found {
            self.paths.push((self.module.clone(), path));
        }
    }
}

/// `a::b::c` runs of identifiers in a token stream (a macro's input), groups included.
fn paths_in_tokens(tokens: proc_macro2::TokenStream, out: &mut Vec<Vec<String>>) {
    use proc_macro2::TokenTree;
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => {
                paths_in_tokens(g.stream(), out);
                i += 1;
            }
            TokenTree::Ident(first) => {
                // Not the tail of a longer path (`::a::b`) or a field/method (`x.a::<T>`).
                let after_colons = i >= 1
                    && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == ':' || p.as_char() == '.');
                let mut path = vec![first.to_string()];
                let mut j = i + 1;
                while j + 2 < tokens.len() + 1 {
                    let colons = matches!(tokens.get(j), Some(TokenTree::Punct(p)) if p.as_char() == ':')
                        && matches!(tokens.get(j + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                    match (colons, tokens.get(j + 2)) {
                        (true, Some(TokenTree::Ident(next))) => {
                            path.push(next.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                if path.len() > 1 && !after_colons {
                    out.push(path);
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway crate: `files` as (path under src/, text).
    fn crate_with(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("module-graph-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join("src").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir.join("src/lib.rs")
    }

    fn names(graph: &CrateGraph) -> Vec<Vec<String>> {
        graph
            .loops()
            .into_iter()
            .map(|ring| {
                ring.iter()
                    .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn two_files_that_use_each_other_are_a_loop_and_a_ring_of_three_too() {
        let root = crate_with(
            "pair",
            &[
                ("lib.rs", "mod a; mod b; mod c; mod d;"),
                ("a.rs", "use crate::b::B; pub struct A;"),
                ("b.rs", "pub struct B; fn f() -> crate::a::A { todo!() }"),
                ("c.rs", "pub struct C; use super::d::D;"),
                ("d.rs", "pub struct D; use crate::c::C;"),
            ],
        );
        let graph = read_crate(&root).unwrap();
        assert_eq!(
            names(&graph),
            vec![vec!["a.rs", "b.rs"], vec!["c.rs", "d.rs"]]
        );
    }

    #[test]
    fn children_naming_their_parent_and_inline_tests_are_not_loops() {
        let root = crate_with(
            "tree",
            &[
                (
                    "lib.rs",
                    "mod engine; pub use engine::Engine; pub struct Config;\n\
                     #[cfg(test)] mod tests { use super::*; }",
                ),
                (
                    "engine.rs",
                    "mod dag; pub struct Engine; use crate::Config;",
                ),
                (
                    "engine/dag.rs",
                    "use super::Engine; #[cfg(test)] mod tests { use super::*; }",
                ),
            ],
        );
        let graph = read_crate(&root).unwrap();
        assert!(graph.loops().is_empty(), "{:?}", graph.loops());
        let lib = graph.files[0].path.clone();
        let engine = graph.files[1].path.clone();
        assert_eq!(graph.imports_of(&engine), vec![lib.as_path()]);
        assert!(
            graph.imports_of(&lib).is_empty(),
            "a re-export is not an import"
        );
    }

    #[test]
    fn a_name_reached_through_the_crate_root_counts_where_it_is_defined() {
        // b uses crate::A, which lib.rs only re-exports from a; a uses b: a real loop.
        let root = crate_with(
            "facade",
            &[
                ("lib.rs", "mod a; mod b; pub use a::A;"),
                ("a.rs", "pub struct A; use crate::b::helper;"),
                ("b.rs", "pub fn helper() {} fn g(_: crate::A) {}"),
            ],
        );
        let graph = read_crate(&root).unwrap();
        assert_eq!(names(&graph), vec![vec!["a.rs", "b.rs"]]);
    }

    #[test]
    fn paths_inside_macros_count() {
        let root = crate_with(
            "macro",
            &[
                ("lib.rs", "mod a; mod b;"),
                (
                    "a.rs",
                    "pub fn f() -> String { format!(\"{}\", crate::b::g()) }",
                ),
                (
                    "b.rs",
                    "pub fn g() -> u8 { assert!(crate::a::f().len() > 0); 1 }",
                ),
            ],
        );
        let graph = read_crate(&root).unwrap();
        assert_eq!(names(&graph), vec![vec!["a.rs", "b.rs"]]);
    }

    #[test]
    fn bad_files_are_errors_that_say_where() {
        let root = crate_with(
            "bad",
            &[("lib.rs", "mod a;"), ("a.rs", "fn f() {\n  let = ;\n}")],
        );
        let e = read_crate(&root).unwrap_err().to_string();
        assert!(e.contains("a.rs:2:"), "{e}");
        let root = crate_with(
            "missing",
            &[("lib.rs", "mod gone;\n#[cfg(windows)] mod win;")],
        );
        let e = read_crate(&root).unwrap_err().to_string();
        assert!(
            e.contains("`mod gone;` has no file") && e.contains("gone/mod.rs"),
            "{e}"
        );
    }
}
