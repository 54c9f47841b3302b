//! `onyx lint` / submit's reader of workflow files: YAML (YAML 1.1 scalars, anchors, merge
//! keys) to JSON with locations, then Argo objects, then lint. Any input may only fail.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_owned();
    common::on_server_stack(move || {
        let long = common::amplified(&text);
        for text in std::iter::once(text.as_str()).chain(long.as_deref()) {
            check(text);
        }
    });
});

fn check(text: &str) {
    if let Ok(docs) = manifest::parse_documents(text) {
        for d in &docs {
            let _ = d.location_of("spec.templates[0].name");
            let _ = d.original_text("metadata.name");
            // Every value must be writable as JSON (what submit sends on).
            let _ = serde_json::to_string(&d.value).expect("JSON");
        }
    }
    let (loaded, _diags) = workflow_model::load_str("fuzz.yaml", text);
    let registry = workflow_model::lint::Registry::from_loaded(&loaded);
    for l in &loaded {
        let _ = workflow_model::lint::lint(l, &registry);
    }
}
