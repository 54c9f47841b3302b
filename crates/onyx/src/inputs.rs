//! Loading the files given on the command line into objects and a template store.

use std::sync::Arc;

use workflow_engine::TemplateStore;
use workflow_model::{lint, Diagnostic, Loaded, Object, Severity};

pub struct Inputs {
    pub loaded: Vec<Loaded>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Inputs {
    pub fn read(files: &[std::path::PathBuf]) -> Inputs {
        let mut loaded = Vec::new();
        let mut diagnostics = Vec::new();
        for f in files {
            let name = f.display().to_string();
            match std::fs::read_to_string(f) {
                Ok(text) => {
                    let (objs, diags) = workflow_model::load_str(&name, &text);
                    loaded.extend(objs);
                    diagnostics.extend(diags);
                }
                Err(e) => diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    file: name,
                    location: Default::default(),
                    path: String::new(),
                    message: format!("cannot read the file: {e}"),
                }),
            }
        }
        Inputs {
            loaded,
            diagnostics,
        }
    }

    /// Lint every loaded object against the others.
    pub fn lint(&mut self) {
        let registry = lint::Registry::from_loaded(&self.loaded);
        for l in &self.loaded {
            self.diagnostics.extend(lint::lint(l, &registry));
        }
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    pub fn store(&self) -> Arc<TemplateStore> {
        let mut s = TemplateStore::default();
        for l in &self.loaded {
            match &l.object {
                Object::WorkflowTemplate(w) => {
                    s.workflow_templates
                        .insert(w.metadata.name.clone(), w.clone());
                }
                Object::ClusterWorkflowTemplate(w) => {
                    s.cluster_workflow_templates
                        .insert(w.metadata.name.clone(), w.clone());
                }
                Object::Other(o) if o.kind == "ConfigMap" => {
                    let data = resource_template::config_map_data(&o.raw);
                    s.config_maps.insert(o.metadata.name.clone(), data);
                }
                _ => {}
            }
        }
        Arc::new(s)
    }

    /// A first file that holds a WorkflowTemplate (or ClusterWorkflowTemplate) and no Workflow
    /// runs as `argo submit --from workflowtemplate/NAME` runs it: a Workflow named `NAME-` plus a
    /// suffix, labelled with its template, whose `workflowTemplateRef` names it.
    pub fn workflow_from_template(
        &self,
        first: &str,
    ) -> Result<workflow_model::WorkflowObject, String> {
        let (name, cluster) = self
            .loaded
            .iter()
            .filter(|l| l.file == first)
            .find_map(|l| match &l.object {
                Object::WorkflowTemplate(w) => Some((w.metadata.name.clone(), false)),
                Object::ClusterWorkflowTemplate(w) => Some((w.metadata.name.clone(), true)),
                _ => None,
            })
            .ok_or_else(|| {
                format!("{first} holds no Workflow, WorkflowTemplate or ClusterWorkflowTemplate")
            })?;
        let label = if cluster {
            "workflows.argoproj.io/cluster-workflow-template"
        } else {
            "workflows.argoproj.io/workflow-template"
        };
        let manifest = serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"generateName": format!("{name}-"), "labels": {label: name}},
            "spec": {"workflowTemplateRef": {"name": name, "clusterScope": cluster}},
        });
        let what = format!("{first} (submitted from its template {name})");
        let (loaded, diagnostics) = workflow_model::load_str(&what, &manifest.to_string());
        if let Some(d) = diagnostics
            .iter()
            .find(|d| d.severity == workflow_model::Severity::Error)
        {
            return Err(d.to_string());
        }
        loaded
            .into_iter()
            .find_map(|l| match l.object {
                Object::Workflow(w) => Some(w),
                _ => None,
            })
            .ok_or_else(|| format!("{what}: no Workflow was made"))
    }

    pub fn objects(&self) -> Vec<Object> {
        self.loaded.iter().map(|l| l.object.clone()).collect()
    }
}
