//! Structural checks Argo's `argo lint` makes before a workflow runs: references resolve,
//! DAGs are acyclic, expressions parse, inputs referenced by a template are declared.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{Diagnostic, Loaded, Object, Severity, Template, WorkflowObject};

/// Names of the templates loaded alongside, to check `templateRef`s.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// WorkflowTemplate name → its template names.
    pub namespaced: HashMap<String, HashSet<String>>,
    /// ClusterWorkflowTemplate name → its template names.
    pub cluster: HashMap<String, HashSet<String>>,
}

impl Registry {
    pub fn from_loaded<'a>(objects: impl IntoIterator<Item = &'a Loaded>) -> Registry {
        let mut r = Registry::default();
        for l in objects {
            let (map, w) = match &l.object {
                Object::WorkflowTemplate(w) => (&mut r.namespaced, w),
                Object::ClusterWorkflowTemplate(w) => (&mut r.cluster, w),
                _ => continue,
            };
            map.insert(
                w.metadata.name.clone(),
                w.spec.templates.iter().map(|t| t.name.clone()).collect(),
            );
        }
        r
    }
}

/// Lint one loaded object.
pub fn lint(loaded: &Loaded, registry: &Registry) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    match &loaded.object {
        Object::Workflow(w) => lint_spec(loaded, w, "spec", true, registry, &mut out),
        Object::WorkflowTemplate(w) | Object::ClusterWorkflowTemplate(w) => {
            lint_spec(loaded, w, "spec", false, registry, &mut out)
        }
        Object::CronWorkflow(c) => {
            if c.spec.schedule.trim().is_empty() && c.spec.schedules.is_empty() {
                out.push(loaded.diagnostic(
                    Severity::Error,
                    "spec.schedule",
                    "a CronWorkflow needs a schedule",
                ));
            }
            if let Some(p) = &c.spec.concurrency_policy {
                if !["Allow", "Forbid", "Replace"].contains(&p.as_str()) {
                    out.push(loaded.diagnostic(
                        Severity::Error,
                        "spec.concurrencyPolicy",
                        format!("expected Allow, Forbid or Replace, found '{p}'"),
                    ));
                }
            }
            let w = WorkflowObject {
                metadata: c.metadata.clone(),
                spec: c.spec.workflow_spec.clone(),
                raw: c.raw.clone(),
            };
            lint_spec(loaded, &w, "spec.workflowSpec", true, registry, &mut out);
        }
        Object::Other(_) => {}
    }
    out
}

fn lint_spec(
    loaded: &Loaded,
    w: &WorkflowObject,
    base: &str,
    needs_entry: bool,
    registry: &Registry,
    out: &mut Vec<Diagnostic>,
) {
    let spec = &w.spec;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, t) in spec.templates.iter().enumerate() {
        let path = format!("{base}.templates[{i}]");
        if t.name.is_empty() {
            out.push(loaded.diagnostic(
                Severity::Error,
                &format!("{path}.name"),
                "a template needs a name",
            ));
        } else if names.insert(&t.name, i).is_some() {
            out.push(loaded.diagnostic(
                Severity::Error,
                &format!("{path}.name"),
                format!("template name '{}' is not unique", t.name),
            ));
        }
    }
    let has_ref = spec.workflow_template_ref.is_some();
    if let Some(r) = &spec.workflow_template_ref {
        let known = if r.cluster_scope {
            registry.cluster.contains_key(&r.name)
        } else {
            registry.namespaced.contains_key(&r.name)
        };
        if !known {
            let kind = if r.cluster_scope {
                "ClusterWorkflowTemplate"
            } else {
                "WorkflowTemplate"
            };
            out.push(loaded.diagnostic(
                Severity::Warning,
                &format!("{base}.workflowTemplateRef.name"),
                format!("{kind} '{}' is not among the loaded files; it must exist when the workflow is submitted", r.name),
            ));
        }
    }
    match &spec.entrypoint {
        Some(e) if !has_ref && !names.contains_key(e.as_str()) && !e.contains("{{") => {
            out.push(loaded.diagnostic(
                Severity::Error,
                &format!("{base}.entrypoint"),
                format!(
                    "entrypoint template '{e}' not found; the templates are: {}",
                    list(&names)
                ),
            ));
        }
        None if needs_entry && !has_ref => {
            out.push(loaded.diagnostic(
                Severity::Error,
                &format!("{base}.entrypoint"),
                "spec.entrypoint is required (the name of the template to start with)",
            ));
        }
        _ => {}
    }
    if let Some(e) = &spec.on_exit {
        if !names.contains_key(e.as_str()) && !has_ref {
            out.push(loaded.diagnostic(
                Severity::Error,
                &format!("{base}.onExit"),
                format!("onExit template '{e}' not found"),
            ));
        }
    }
    for (i, p) in spec.arguments.parameters.iter().enumerate() {
        check_enum(loaded, &format!("{base}.arguments.parameters[{i}]"), p, out);
    }
    let ctx = Ctx {
        loaded,
        names: &names,
        registry,
    };
    for (i, t) in spec.templates.iter().enumerate() {
        ctx.template(t, &format!("{base}.templates[{i}]"), out);
    }
    for (k, h) in &spec.hooks {
        ctx.reference(
            h.template.as_deref(),
            h.template_ref.as_ref(),
            &format!("{base}.hooks.{k}"),
            out,
        );
    }
    expressions_parse(loaded, &w.raw, "", out);
}

fn check_enum(loaded: &Loaded, path: &str, p: &crate::Parameter, out: &mut Vec<Diagnostic>) {
    if p.enum_values.is_empty() {
        return;
    }
    if let Some(v) = p.value.as_ref().or(p.default.as_ref()) {
        if !v.contains("{{") && !p.enum_values.iter().any(|e| e.0 == v.0) {
            let allowed: Vec<&str> = p.enum_values.iter().map(|e| e.0.as_str()).collect();
            out.push(loaded.diagnostic(
                Severity::Error,
                path,
                format!(
                    "value '{}' of parameter '{}' is not one of the enum values [{}]",
                    v.0,
                    p.name,
                    allowed.join(", ")
                ),
            ));
        }
    }
}

fn list(names: &HashMap<&str, usize>) -> String {
    let mut v: Vec<&str> = names.keys().copied().collect();
    v.sort();
    v.join(", ")
}

struct Ctx<'a> {
    loaded: &'a Loaded,
    names: &'a HashMap<&'a str, usize>,
    registry: &'a Registry,
}

impl Ctx<'_> {
    fn reference(
        &self,
        template: Option<&str>,
        tref: Option<&crate::TemplateRef>,
        path: &str,
        out: &mut Vec<Diagnostic>,
    ) {
        if let Some(name) = template {
            if !self.names.contains_key(name) && !name.contains("{{") {
                out.push(self.loaded.diagnostic(
                    Severity::Error,
                    &format!("{path}.template"),
                    format!(
                        "template '{name}' not found; the templates are: {}",
                        list(self.names)
                    ),
                ));
            }
        } else if let Some(r) = tref {
            let map = if r.cluster_scope {
                &self.registry.cluster
            } else {
                &self.registry.namespaced
            };
            let kind = if r.cluster_scope {
                "ClusterWorkflowTemplate"
            } else {
                "WorkflowTemplate"
            };
            match map.get(&r.name) {
                None => out.push(self.loaded.diagnostic(
                    Severity::Warning,
                    &format!("{path}.templateRef"),
                    format!("{kind} '{}' is not among the loaded files; it must exist when the workflow runs", r.name),
                )),
                Some(ts) if !ts.contains(&r.template) => out.push(self.loaded.diagnostic(
                    Severity::Error,
                    &format!("{path}.templateRef.template"),
                    format!("{kind} '{}' has no template '{}'", r.name, r.template),
                )),
                Some(_) => {}
            }
        }
    }

    fn template(&self, t: &Template, path: &str, out: &mut Vec<Diagnostic>) {
        let kinds = t.kinds();
        if kinds.is_empty() {
            out.push(self.loaded.diagnostic(Severity::Error, path, format!(
                "template '{}' must specify one of container, script, containerSet, resource, steps, dag, suspend, http, data or plugin",
                t.name
            )));
        } else if kinds.len() > 1 {
            out.push(self.loaded.diagnostic(
                Severity::Error,
                path,
                format!("template '{}' specifies more than one of {kinds:?}", t.name),
            ));
        }
        for (i, p) in t.inputs.parameters.iter().enumerate() {
            check_enum(
                self.loaded,
                &format!("{path}.inputs.parameters[{i}]"),
                p,
                out,
            );
        }
        if let Some(steps) = &t.steps {
            for (g, group) in steps.iter().enumerate() {
                for (s, step) in group.0.iter().enumerate() {
                    let sp = format!("{path}.steps[{g}][{s}]");
                    if step.name.is_empty() {
                        out.push(self.loaded.diagnostic(
                            Severity::Error,
                            &format!("{sp}.name"),
                            "a step needs a name",
                        ));
                    }
                    if let Some(inline) = &step.inline {
                        self.template(inline, &format!("{sp}.inline"), out);
                    } else if step.template.is_none() && step.template_ref.is_none() {
                        out.push(self.loaded.diagnostic(
                            Severity::Error,
                            &sp,
                            format!(
                                "step '{}' needs a template, templateRef or inline template",
                                step.name
                            ),
                        ));
                    }
                    self.reference(
                        step.template.as_deref(),
                        step.template_ref.as_ref(),
                        &sp,
                        out,
                    );
                    if let Some(w) = &step.when {
                        self.when_parses(w, &format!("{sp}.when"), out);
                    }
                    if let Some(e) = &step.on_exit {
                        self.reference(Some(e), None, &format!("{sp}.onExit"), out);
                    }
                }
            }
        }
        if let Some(dag) = &t.dag {
            self.dag(dag, &format!("{path}.dag"), out);
        }
        self.inputs_declared(t, path, out);
    }

    fn when_parses(&self, when: &str, path: &str, out: &mut Vec<Diagnostic>) {
        // Tags are filled in at run time; check the shape with placeholders.
        let mut probe = String::new();
        let mut rest = when;
        while let Some(s) = rest.find("{{") {
            probe.push_str(&rest[..s]);
            match rest[s..].find("}}") {
                Some(e) => {
                    probe.push_str("placeholder");
                    rest = &rest[s + e + 2..];
                }
                None => {
                    rest = &rest[s..];
                    break;
                }
            }
        }
        probe.push_str(rest);
        if let Err(e @ template_eval::EvalError::Syntax { .. }) =
            template_eval::govaluate::eval(&probe)
        {
            out.push(self.loaded.diagnostic(
                Severity::Error,
                path,
                format!("invalid 'when' expression: {e}"),
            ));
        }
    }

    fn dag(&self, dag: &crate::DagTemplate, path: &str, out: &mut Vec<Diagnostic>) {
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, task) in dag.tasks.iter().enumerate() {
            let tp = format!("{path}.tasks[{i}]");
            if task.name.is_empty() {
                out.push(self.loaded.diagnostic(
                    Severity::Error,
                    &format!("{tp}.name"),
                    "a task needs a name",
                ));
            } else if index.insert(&task.name, i).is_some() {
                out.push(self.loaded.diagnostic(
                    Severity::Error,
                    &format!("{tp}.name"),
                    format!("task name '{}' is not unique", task.name),
                ));
            }
        }
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); dag.tasks.len()];
        for (i, task) in dag.tasks.iter().enumerate() {
            let tp = format!("{path}.tasks[{i}]");
            if let Some(inline) = &task.inline {
                self.template(inline, &format!("{tp}.inline"), out);
            } else if task.template.is_none() && task.template_ref.is_none() {
                out.push(self.loaded.diagnostic(
                    Severity::Error,
                    &tp,
                    format!(
                        "task '{}' needs a template, templateRef or inline template",
                        task.name
                    ),
                ));
            }
            self.reference(
                task.template.as_deref(),
                task.template_ref.as_ref(),
                &tp,
                out,
            );
            if task.depends.is_some() && !task.dependencies.is_empty() {
                out.push(self.loaded.diagnostic(
                    Severity::Error,
                    &tp,
                    "a task cannot use both 'depends' and 'dependencies'",
                ));
            }
            let deps: Vec<String> = match &task.depends {
                Some(d) => match crate::lint::depends_names(d) {
                    Ok(n) => n,
                    Err(m) => {
                        out.push(self.loaded.diagnostic(
                            Severity::Error,
                            &format!("{tp}.depends"),
                            m,
                        ));
                        Vec::new()
                    }
                },
                None => task.dependencies.clone(),
            };
            for d in deps {
                match index.get(d.as_str()) {
                    Some(j) => edges[i].push(*j),
                    None => out.push(self.loaded.diagnostic(
                        Severity::Error,
                        &format!(
                            "{tp}.{}",
                            if task.depends.is_some() {
                                "depends"
                            } else {
                                "dependencies"
                            }
                        ),
                        format!(
                            "task '{}' depends on '{d}', which is not a task of this DAG",
                            task.name
                        ),
                    )),
                }
            }
            if let Some(w) = &task.when {
                self.when_parses(w, &format!("{tp}.when"), out);
            }
        }
        if let Some(target) = &dag.target {
            for t in target.split_whitespace() {
                if !index.contains_key(t) && !t.contains("{{") {
                    out.push(self.loaded.diagnostic(
                        Severity::Error,
                        &format!("{path}.target"),
                        format!("target '{t}' is not a task of this DAG"),
                    ));
                }
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            let names: Vec<&str> = cycle.iter().map(|i| dag.tasks[*i].name.as_str()).collect();
            out.push(self.loaded.diagnostic(
                Severity::Error,
                &format!("{path}.tasks[{}]", cycle[0]),
                format!("dependency cycle: {}", names.join(" -> ")),
            ));
        }
    }

    /// `{{inputs.parameters.x}}` inside a template must name a declared input, as Argo checks.
    fn inputs_declared(&self, t: &Template, path: &str, out: &mut Vec<Diagnostic>) {
        let declared: HashSet<&str> = t
            .inputs
            .parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let declared_art: HashSet<&str> =
            t.inputs.artifacts.iter().map(|a| a.name.as_str()).collect();
        let mut body = serde_json::to_value(t).unwrap_or_default();
        // Nested inline templates declare their own inputs.
        strip_inline(&mut body);
        let text = body.to_string();
        let mut rest = text.as_str();
        while let Some(s) = rest.find("{{") {
            let after = &rest[s + 2..];
            let Some(e) = after.find("}}") else { break };
            let tag = after[..e].trim();
            rest = &after[e + 2..];
            if let Some(name) = tag.strip_prefix("inputs.parameters.") {
                if !declared.contains(name) {
                    out.push(self.loaded.diagnostic(Severity::Error, path, format!("template '{}' uses {{{{{tag}}}}} but declares no input parameter '{name}'", t.name)));
                }
            } else if let Some(name) = tag.strip_prefix("inputs.artifacts.") {
                let name = name.strip_suffix(".path").unwrap_or(name);
                if !declared_art.contains(name) {
                    out.push(self.loaded.diagnostic(Severity::Error, path, format!("template '{}' uses {{{{{tag}}}}} but declares no input artifact '{name}'", t.name)));
                }
            }
        }
    }
}

fn strip_inline(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("inline");
            m.values_mut().for_each(strip_inline);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_inline),
        _ => {}
    }
}

fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut state = vec![0u8; edges.len()];
    let mut stack = Vec::new();
    for start in 0..edges.len() {
        if state[start] != 0 {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        state[start] = 1;
        stack.push(start);
        while let Some((node, next)) = work.pop() {
            if next < edges[node].len() {
                work.push((node, next + 1));
                let m = edges[node][next];
                match state[m] {
                    0 => {
                        state[m] = 1;
                        stack.push(m);
                        work.push((m, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|x| *x == m).unwrap_or(0);
                        let mut cycle = stack[pos..].to_vec();
                        cycle.push(m);
                        cycle.reverse();
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// The task names a `depends` expression mentions (`A && (B.Failed || C)` → A, B, C).
pub fn depends_names(depends: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for word in depends.split(|c: char| {
        c == '&' || c == '|' || c == '(' || c == ')' || c == '!' || c.is_whitespace()
    }) {
        if word.is_empty() {
            continue;
        }
        let name = match word.rsplit_once('.') {
            Some((
                n,
                "Succeeded" | "Failed" | "Errored" | "Skipped" | "Omitted" | "Daemoned"
                | "AnySucceeded" | "AllFailed",
            )) => n,
            Some((_, suffix)) if suffix.chars().next().is_some_and(|c| c.is_uppercase()) => {
                return Err(format!("unknown result '.{suffix}' in depends '{depends}'; expected one of .Succeeded, .Failed, .Errored, .Skipped, .Omitted, .Daemoned, .AnySucceeded, .AllFailed"));
            }
            _ => word,
        };
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// `{{=...}}` tags anywhere in the object must parse.
fn expressions_parse(
    loaded: &Loaded,
    v: &serde_json::Value,
    path: &str,
    out: &mut Vec<Diagnostic>,
) {
    match v {
        serde_json::Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{=") {
                let after = &rest[start + 3..];
                let Some(end) = after.find("}}") else { break };
                if let Err(e @ template_eval::EvalError::Syntax { .. }) =
                    template_eval::expr::parse(&after[..end])
                {
                    out.push(loaded.diagnostic(Severity::Error, path, e.to_string()));
                }
                rest = &after[end + 2..];
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                expressions_parse(loaded, x, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expressions_parse(loaded, x, &p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_str;

    fn lint_text(text: &str) -> Vec<String> {
        let (objs, mut diags) = load_str("t.yaml", text);
        let reg = Registry::from_loaded(&objs);
        for o in &objs {
            diags.extend(lint(o, &reg));
        }
        diags.iter().map(|d| d.to_string()).collect()
    }

    const HEAD: &str =
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: t-}\nspec:\n";

    #[test]
    fn unknown_template_and_entrypoint() {
        let d = lint_text(&format!("{HEAD}  entrypoint: nope\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: missing\n"));
        assert!(
            d.iter().any(|m| m.contains(
                "t.yaml:5:3: error: spec.entrypoint: entrypoint template 'nope' not found"
            )),
            "{d:?}"
        );
        assert!(
            d.iter().any(|m| m
                .contains("spec.templates[0].steps[0][0].template: template 'missing' not found")),
            "{d:?}"
        );
    }

    #[test]
    fn dag_cycle_and_unknown_dependency() {
        let d = lint_text(&format!(
            "{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - {{name: a, template: w, depends: b}}\n      - {{name: b, template: w, depends: a && c.Succeeded}}\n  - name: w\n    container: {{image: x}}\n"
        ));
        assert!(
            d.iter().any(|m| m.contains("dependency cycle: a -> b -> a")
                || m.contains("dependency cycle: b -> a -> b")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|m| m.contains("depends on 'c', which is not a task")),
            "{d:?}"
        );
    }

    #[test]
    fn undeclared_inputs_and_bad_expressions() {
        let d = lint_text(&format!(
            "{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    container:\n      image: x\n      args: [\"{{{{inputs.parameters.msg}}}}\", \"{{{{=1 +}}}}\"]\n"
        ));
        assert!(
            d.iter()
                .any(|m| m.contains("declares no input parameter 'msg'")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|m| m.contains("spec.templates[0].container.args[1]")
                    && m.contains("invalid expression")),
            "{d:?}"
        );
    }

    #[test]
    fn valid_workflow_is_clean() {
        let d = lint_text(&format!(
            "{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    inputs: {{parameters: [{{name: msg, value: hi}}]}}\n    container:\n      image: x\n      args: [\"{{{{inputs.parameters.msg}}}}\"]\n"
        ));
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn depends_names_parse() {
        assert_eq!(
            depends_names("A && (C.Succeeded || C.Failed)").unwrap(),
            vec!["A", "C"]
        );
        assert!(depends_names("A.Finished").is_err());
    }
}
