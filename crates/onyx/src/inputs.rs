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
                    let data = crate::resource::config_map_data(&o.raw);
                    s.config_maps.insert(o.metadata.name.clone(), data);
                }
                _ => {}
            }
        }
        Arc::new(s)
    }

    pub fn objects(&self) -> Vec<Object> {
        self.loaded.iter().map(|l| l.object.clone()).collect()
    }
}
