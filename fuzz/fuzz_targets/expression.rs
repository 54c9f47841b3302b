//! Argo's template language on arbitrary text: `{{...}}` substitution, `{{=...}}` expr-lang
//! expressions, and govaluate `when` conditions, against a small fixed scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use template_eval::{expr, govaluate, substitute, Vars};

mod common;

fn scope() -> Vars {
    let mut v = Vars::default();
    for (k, val) in [
        ("inputs.parameters.x", "3"),
        ("inputs.parameters.s", "hello world"),
        ("inputs.parameters.list", "[1, 2, \"a\"]"),
        (
            "inputs.parameters.obj",
            "{\"a\": {\"b\": [1, 2]}, \"c\": \"d\"}",
        ),
        ("steps.a.outputs.result", "{\"k\": \"v\", \"n\": 1.5}"),
        ("workflow.name", "wf-1"),
        ("workflow.status", "Succeeded"),
        ("item", "7"),
    ] {
        v.insert(k.to_string(), val.to_string());
    }
    v
}

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
    let vars = scope();
    let _ = substitute(text, &vars, true);
    let _ = substitute(text, &vars, false);
    // The input as the body of one expression tag and of one plain tag.
    let _ = substitute(&format!("{{{{={text}}}}}"), &vars, false);
    let _ = substitute(&format!("a{{{{{text}}}}}b"), &vars, true);
    let env = template_eval::expand_vars(&vars);
    let _ = expr::eval(text, &env);
    let _ = expr::identifiers(text);
    let _ = govaluate::eval(text);
}
