//! Whether an event passes a dependency's `filters`, and whether an object passes a resource
//! EventSource's `filter`.

use serde_json::{json, Map, Value};

use crate::event::Event;
use crate::params::{at, text};

/// A resource EventSource's `filter.fields` and `filter.labels` (each `==` or `!=`).
pub fn resource_passes(filter: &Value, obj: &Value) -> bool {
    let fields = filter["fields"].as_array().into_iter().flatten();
    let labels = filter["labels"].as_array().into_iter().flatten().map(|l| {
        json!({"key": format!("metadata.labels.{}", l["key"].as_str().unwrap_or_default()),
               "operation": l["operation"], "value": l["value"]})
    });
    fields.cloned().chain(labels).all(|f| {
        let key = f["key"].as_str().unwrap_or_default();
        let want = f["value"].as_str().unwrap_or_default();
        let got = at(obj, key).map(text).unwrap_or_default();
        match f["operation"].as_str().unwrap_or("==") {
            "!=" => got != want,
            "" | "=" | "==" => got == want,
            _ => false,
        }
    })
}

fn combine(
    operator: Option<&str>,
    results: impl Iterator<Item = Result<bool, String>>,
) -> Result<bool, String> {
    let results: Vec<bool> = results.collect::<Result<_, _>>()?;
    Ok(match operator.unwrap_or("and") {
        "or" => results.is_empty() || results.iter().any(|b| *b),
        _ => results.iter().all(|b| *b),
    })
}

/// A dependency's filters over an event: `data` and `exprs`, combined by
/// `filtersLogicalOperator` (default `and`). Errors name the filter.
pub fn passes(
    filters: Option<&Value>,
    operator: Option<&str>,
    event: &Event,
) -> Result<bool, String> {
    let Some(filters) = filters.filter(|f| f.is_object()) else {
        return Ok(true);
    };
    let mut kinds = Vec::new();
    if let Some(data) = filters["data"].as_array() {
        kinds.push(combine(
            filters["dataLogicalOperator"].as_str(),
            data.iter().enumerate().map(|(i, f)| {
                data_filter(f, &event.data).map_err(|e| format!("filters.data[{i}]: {e}"))
            }),
        ));
    }
    if let Some(exprs) = filters["exprs"].as_array() {
        kinds.push(combine(
            filters["exprLogicalOperator"].as_str(),
            exprs.iter().enumerate().map(|(i, f)| {
                expr_filter(f, &event.data).map_err(|e| format!("filters.exprs[{i}]: {e}"))
            }),
        ));
    }
    combine(operator, kinds.into_iter())
}

fn data_filter(f: &Value, data: &Value) -> Result<bool, String> {
    let path = f["path"].as_str().ok_or("path is required")?;
    let Some(got) = at(data, path) else {
        return Ok(false);
    };
    let comparator = f["comparator"].as_str().unwrap_or("");
    let values: Vec<&str> = f["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut any = false;
    for want in values {
        let matched = match f["type"].as_str().unwrap_or("string") {
            "bool" => {
                let w: bool = want
                    .parse()
                    .map_err(|_| format!("value {want:?}: expected true or false"))?;
                truthy(got) == w
            }
            "number" => {
                let w: f64 = want
                    .parse()
                    .map_err(|_| format!("value {want:?}: expected a number"))?;
                let g = number(got);
                match comparator {
                    ">=" => g >= w,
                    ">" => g > w,
                    "<" => g < w,
                    "<=" => g <= w,
                    "!=" => g != w,
                    "" | "=" => g == w,
                    other => {
                        return Err(format!(
                            "comparator {other:?}: expected one of >=, >, <, <=, =, !="
                        ))
                    }
                }
            }
            "string" => {
                let g = match got {
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                match comparator {
                    "=" => g == want,
                    "!=" => g != want,
                    _ => regex::Regex::new(want)
                        .map_err(|e| format!("value {want:?}: {e}"))?
                        .is_match(&g),
                }
            }
            other => return Err(format!("type {other:?}: expected string, number or bool")),
        };
        any |= matched;
    }
    Ok(any)
}

/// gjson's `.Bool()`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => {
            s.parse::<bool>().unwrap_or(false) || s.parse::<f64>().is_ok_and(|x| x != 0.0)
        }
        _ => false,
    }
}

/// gjson's `.Float()`.
fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(true) => 1.0,
        _ => 0.0,
    }
}

fn expr_filter(f: &Value, data: &Value) -> Result<bool, String> {
    let expr = f["expr"].as_str().ok_or("expr is required")?;
    let mut env = Map::new();
    for field in f["fields"].as_array().into_iter().flatten() {
        let name = field["name"].as_str().ok_or("fields[].name is required")?;
        let path = field["path"].as_str().ok_or("fields[].path is required")?;
        let Some(v) = at(data, path) else {
            // A field that is not in the event: the filter does not pass.
            return Ok(false);
        };
        env.insert(name.into(), v.clone());
    }
    match template_eval::expr::eval(expr, &Value::Object(env)) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("{expr:?} is {other}, not a boolean")),
        Err(e) => Err(format!("{expr:?}: {e}")),
    }
}
