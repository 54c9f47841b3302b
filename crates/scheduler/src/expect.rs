//! A scenario file's expectations: loading the file and comparing what a cycle decided with
//! what the file expects, naming every difference.

use std::collections::BTreeSet;

use crate::model::{Expect, Scenario};
use crate::outcome::Outcome;

/// Compare an outcome with what the scenario expects; `Err` lists every difference.
pub fn compare(expect: &Expect, out: &Outcome) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (pod, node) in &expect.binds {
        match out.binds.get(pod) {
            Some(n) if node == "*" || n == node => {}
            Some(n) => diffs.push(format!("{pod} bound to {n}, expected {node}")),
            None => diffs.push(format!("{pod} not bound, expected {node}")),
        }
    }
    for pod in out.binds.keys() {
        if !expect.binds.contains_key(pod) {
            diffs.push(format!(
                "{pod} bound to {} but must not bind",
                out.binds[pod]
            ));
        }
    }
    if let Some(ev) = &expect.evictions {
        let want: BTreeSet<String> = ev.iter().cloned().collect();
        if want != out.evictions {
            diffs.push(format!(
                "evictions {:?}, expected {:?}",
                out.evictions, want
            ));
        }
    } else if let Some(n) = expect.eviction_count {
        if out.evictions.len() != n {
            diffs.push(format!("{} evictions, expected {n}", out.evictions.len()));
        }
    } else if !out.evictions.is_empty() {
        diffs.push(format!("evictions {:?}, expected none", out.evictions));
    }
    for (g, nodes) in &expect.pipelined {
        if out.pipelined.get(g) != Some(nodes) {
            diffs.push(format!(
                "{g} pipelined on {:?}, expected {nodes:?}",
                out.pipelined.get(g)
            ));
        }
    }
    for (g, phase) in &expect.group_phases {
        if out.group_phases.get(g) != Some(phase) {
            diffs.push(format!(
                "{g} phase {:?}, expected {phase}",
                out.group_phases.get(g)
            ));
        }
    }
    for (n, layout) in &expect.mig_layouts {
        if out.mig_layouts.get(n) != Some(layout) {
            diffs.push(format!(
                "{n} MIG layout {:?}, expected {layout:?}",
                out.mig_layouts.get(n)
            ));
        }
    }
    for (p, want) in &expect.devices {
        if out.devices.get(p) != Some(want) {
            diffs.push(format!(
                "{p} got devices {:?}, expected {want:?}",
                out.devices.get(p)
            ));
        }
    }
    for (p, part) in &expect.reasons {
        match out.reasons.get(p) {
            Some(m) if m.contains(part.as_str()) => {}
            Some(m) => diffs.push(format!(
                "{p} waits because {m:?}, expected a reason with {part:?}"
            )),
            None => diffs.push(format!("{p} has no reason to wait, expected {part:?}")),
        }
    }
    for (p, part) in &expect.refused {
        match out.refused.get(p) {
            Some(m) if m.contains(part.as_str()) => {}
            Some(m) => diffs.push(format!(
                "{p} refused with {m:?}, expected a message with {part:?}"
            )),
            None => diffs.push(format!("{p} not refused, expected {part:?}")),
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// Read a scenario file (YAML or JSON).
pub fn load(text: &str) -> Result<Scenario, String> {
    let docs = manifest::parse_documents(text).map_err(|e| e.to_string())?;
    let doc = docs.into_iter().next().ok_or("the file is empty")?;
    serde_json::from_value(doc.value).map_err(|e| format!("not a scenario: {e}"))
}
