//! What a `resource` template's object says: Argo's success and failure conditions, and
//! output parameters read from the object (`jsonPath`, `jqFilter`).

use serde_json::Value;
use workflow_model::Template;

/// Argo's resource conditions: label-selector style requirements joined by commas, on field
/// paths of the object (`status.phase == Succeeded`, `status.phase in (Failed, Error)`,
/// `status.succeeded > 2`).
pub fn matches(obj: &Value, condition: &str) -> bool {
    split_requirements(condition)
        .iter()
        .all(|req| requirement(obj, req.trim()))
}

fn split_requirements(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

pub fn field(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for p in path.split('.') {
        cur = cur.get(p)?;
    }
    Some(match cur {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn requirement(obj: &Value, req: &str) -> bool {
    for op in [" notin ", " in "] {
        if let Some((k, set)) = req.split_once(op) {
            let values: Vec<&str> = set
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(str::trim)
                .collect();
            let v = field(obj, k.trim());
            let inside = v.as_deref().is_some_and(|v| values.contains(&v));
            return if op == " in " { inside } else { !inside };
        }
    }
    for op in ["==", "!=", ">=", "<=", "=", ">", "<"] {
        if let Some((k, want)) = req.split_once(op) {
            let have = field(obj, k.trim());
            let want = want.trim();
            return match op {
                "==" | "=" => have.as_deref() == Some(want),
                "!=" => have.as_deref() != Some(want),
                _ => {
                    let (Some(h), Ok(w)) = (
                        have.and_then(|h| h.parse::<f64>().ok()),
                        want.parse::<f64>(),
                    ) else {
                        return false;
                    };
                    match op {
                        ">" => h > w,
                        "<" => h < w,
                        ">=" => h >= w,
                        _ => h <= w,
                    }
                }
            };
        }
    }
    field(obj, req).is_some()
}

/// The template's output parameters, read from the object.
pub fn outputs(obj: &Value, t: &Template) -> Result<Vec<(String, String)>, String> {
    let mut outputs = Vec::new();
    for p in &t.outputs.parameters {
        let Some(vf) = &p.value_from else { continue };
        if let Some(jp) = &vf.json_path {
            let path = jp
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .trim();
            let path = if path.starts_with('$') {
                path.to_string()
            } else {
                format!("${path}")
            };
            let v = template_eval::jsonpath::query(obj, &path)
                .map_err(|e| format!("output '{}': {e}", p.name))?;
            outputs.push((
                p.name.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            ));
        } else if let Some(jq) = &vf.jq_filter {
            let v = run_jq(jq, obj).map_err(|e| format!("output '{}': {e}", p.name))?;
            outputs.push((p.name.clone(), v));
        }
    }
    Ok(outputs)
}

fn run_jq(filter: &str, obj: &Value) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new("jq")
        .arg("-r")
        .arg(filter)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("jq: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(obj.to_string().as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_follow_label_selector_rules() {
        let o = json!({"status": {"phase": "Failed", "succeeded": 3}});
        assert!(matches(&o, "status.phase in (Failed, Error)"));
        assert!(!matches(&o, "status.phase == Succeeded"));
        assert!(matches(&o, "status.succeeded > 2"));
        assert!(matches(&o, "status.succeeded > 2, status.phase != Running"));
        assert!(!matches(&o, "status.succeeded > 9"));
    }
}
