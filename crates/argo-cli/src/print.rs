//! How the client prints objects, workflows and tables.

use serde_json::{json, Value};

use workflow_engine::tree as render;

use super::commands::Format;

pub(super) fn print_obj(v: &Value, f: Format) -> anyhow::Result<()> {
    match f {
        Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Format::Yaml => print!("{}", to_yaml(v)),
        Format::Name => println!("{}", v["metadata"]["name"].as_str().unwrap_or_default()),
        Format::Wide => println!("{}", render::summary(v)),
    }
    Ok(())
}

pub(super) fn outcome_line(wf: &Value) -> String {
    format!(
        "{} {} at {}",
        wf["metadata"]["name"].as_str().unwrap_or_default(),
        wf["status"]["phase"].as_str().unwrap_or_default(),
        wf["status"]["finishedAt"].as_str().unwrap_or_default()
    )
}

pub(super) fn table(rows: &[Vec<String>]) {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

pub(super) fn age(t: &Value) -> String {
    let Some(t) = t
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return String::new();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub(super) fn list_workflows(items: &[Value], f: Format, all_ns: bool) -> anyhow::Result<()> {
    match f {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json!(items))?),
        Format::Yaml => print!("{}", to_yaml(&json!(items))),
        Format::Name => {
            for w in items {
                println!("{}", w["metadata"]["name"].as_str().unwrap_or_default());
            }
        }
        Format::Wide => {
            let mut rows = vec![];
            let mut head = vec!["NAME", "STATUS", "AGE", "DURATION", "PROGRESS"];
            if all_ns {
                head.insert(0, "NAMESPACE");
            }
            rows.push(head.iter().map(|s| s.to_string()).collect());
            for w in items {
                let mut r = vec![
                    w["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    w["status"]["phase"]
                        .as_str()
                        .unwrap_or("Pending")
                        .to_string(),
                    age(&w["metadata"]["creationTimestamp"]),
                    render::duration(&w["status"]),
                    w["status"]["progress"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ];
                if all_ns {
                    r.insert(
                        0,
                        w["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                    );
                }
                rows.push(r);
            }
            table(&rows);
        }
    }
    Ok(())
}

/// YAML for printing.
pub fn to_yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}
