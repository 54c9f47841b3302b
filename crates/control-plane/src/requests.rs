//! Namespace requests, the spec's access flow: a user asks for a namespace (with a ticket and
//! a GPU quota) for one of their groups; an admin approves or denies it; once approved the
//! namespace exists for that group — every verb in it, and its GPU quota in the scheduler —
//! from then on, across restarts (requests are stored objects).
//!
//! Pure: what a request is, what deciding it does, and what an approved one grants. The API
//! module stores them; `auth` and the scheduler read the grants.

use serde_json::{json, Value};

/// The stored objects' kind (cluster-scoped: namespace "").
pub const KIND: &str = "NamespaceRequest";

use access::is_namespace as valid_namespace;

/// A new request from `body` (`namespace`, `ticketId`, `gpuQuota`, `group`, `reason`) by
/// `requester`, who belongs to `groups`.
pub fn new_request(
    body: &Value,
    requester: &str,
    groups: &[String],
    admin: bool,
    now: &str,
) -> Result<Value, String> {
    let ns = body["namespace"]
        .as_str()
        .ok_or("namespace: required (the namespace asked for)")?;
    if !valid_namespace(ns) {
        return Err(format!(
            "namespace: {ns:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
        ));
    }
    let ticket = body["ticketId"]
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .ok_or("ticketId: required (the ticket that approves this namespace)")?;
    let quota = match &body["gpuQuota"] {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .filter(|g| *g <= 100_000)
                .ok_or_else(|| format!("gpuQuota: {v} is not a number of GPUs"))?
                as u32,
        ),
    };
    let group = match body["group"].as_str() {
        Some(g) if admin || groups.iter().any(|x| x == g) => g.to_string(),
        Some(g) => {
            return Err(format!(
                "group: {requester:?} is not in group {g:?} (their groups: {groups:?})"
            ))
        }
        None => groups
            .first()
            .cloned()
            .ok_or("group: required (the requester's token names no group)")?,
    };
    Ok(json!({
        "apiVersion": "onyx.dev/v1",
        "kind": KIND,
        "metadata": {"name": ns, "creationTimestamp": now},
        "spec": {
            "namespace": ns,
            "ticketId": ticket,
            "gpuQuota": quota,
            "group": group,
            "requester": requester,
            "reason": body["reason"].as_str().unwrap_or_default(),
        },
        "status": {"phase": "Pending"},
    }))
}

/// Approve or deny a pending request.
pub fn decide(request: &mut Value, approve: bool, by: &str, now: &str) -> Result<(), String> {
    let phase = request["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Pending" {
        return Err(format!(
            "namespace request {} is already {phase}",
            request["metadata"]["name"]
        ));
    }
    request["status"] = json!({
        "phase": if approve { "Approved" } else { "Denied" },
        "decidedBy": by,
        "decidedAt": now,
    });
    Ok(())
}

/// What an approved request grants: its group, every verb, in its namespace.
pub fn grant_of(body: &str) -> Option<access::Grant> {
    let v: Value = serde_json::from_str(body).ok()?;
    (v["status"]["phase"] == "Approved").then(|| access::Grant {
        group: v["spec"]["group"].as_str().unwrap_or_default().to_string(),
        namespaces: vec![v["spec"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string()],
        verbs: vec!["*".into()],
    })
}

/// The namespace and GPU quota of an approved request.
pub fn quota_of(body: &str) -> Option<(String, Option<u32>)> {
    let v: Value = serde_json::from_str(body).ok()?;
    (v["status"]["phase"] == "Approved").then(|| {
        (
            v["spec"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            v["spec"]["gpuQuota"].as_u64().map(|g| g as u32),
        )
    })
}

/// Whether `who` (in `groups`) may see a request: they made it, or it is for their group.
pub fn visible_to(request: &Value, who: &str, groups: &[String]) -> bool {
    request["spec"]["requester"] == who
        || request["spec"]["group"]
            .as_str()
            .is_some_and(|g| groups.iter().any(|x| x == g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_checked_decided_once_and_then_grants() {
        let groups = vec!["team-c".to_string()];
        let body = json!({"namespace": "team-c", "ticketId": "OPS-7", "gpuQuota": 16});
        let mut r = new_request(&body, "carol", &groups, false, "2026-12-05T00:00:00Z").unwrap();
        assert_eq!(r["spec"]["group"], "team-c");
        assert_eq!(grant_of(&r.to_string()), None, "pending grants nothing");
        decide(&mut r, true, "ops", "2026-12-05T01:00:00Z").unwrap();
        assert_eq!(
            grant_of(&r.to_string()).unwrap().namespaces,
            vec!["team-c".to_string()]
        );
        assert_eq!(
            quota_of(&r.to_string()),
            Some(("team-c".to_string(), Some(16)))
        );
        assert!(decide(&mut r, false, "ops", "later")
            .unwrap_err()
            .contains("already Approved"));
        let bad = |b: Value| new_request(&b, "carol", &groups, false, "t").unwrap_err();
        assert!(bad(json!({"namespace": "Team C", "ticketId": "x"})).starts_with("namespace:"));
        assert!(bad(json!({"namespace": "c"})).starts_with("ticketId:"));
        assert!(
            bad(json!({"namespace": "c", "ticketId": "x", "group": "team-a"}))
                .contains("not in group")
        );
        assert!(
            bad(json!({"namespace": "c", "ticketId": "x", "gpuQuota": "lots"}))
                .starts_with("gpuQuota:")
        );
    }
}
