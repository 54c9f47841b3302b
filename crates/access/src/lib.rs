//! Namespace RBAC, as Kubernetes' RBAC answers it for Argo Server in `client` mode: each API
//! call needs a verb on a resource in a namespace (or across all namespaces, or on the cluster),
//! and a user may make it when one of the groups in their token is granted that verb there.
//!
//! Pure: the server finds the user (from a verified token) and the call, this crate decides.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use serde::Deserialize;
use subtle::ConstantTimeEq as _;

/// Kubernetes' verbs, as RBAC rules name them.
pub const VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// A grant in the config file: a group's verbs in some namespaces (`*`: every namespace).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub group: String,
    pub namespaces: Vec<String>,
    /// Default: every verb.
    #[serde(default = "all_verbs")]
    pub verbs: Vec<String>,
}

fn all_verbs() -> Vec<String> {
    VERBS.iter().map(|v| v.to_string()).collect()
}

impl Grant {
    /// A grant naming a verb Kubernetes does not have is a config error.
    pub fn check(&self) -> Result<(), String> {
        for v in &self.verbs {
            if v != "*" && !VERBS.contains(&v.as_str()) {
                return Err(format!(
                    "grant for group {:?}: verb {v:?} is not one of {}",
                    self.group,
                    VERBS.join(", ")
                ));
            }
        }
        if self.namespaces.is_empty() {
            return Err(format!(
                "grant for group {:?}: namespaces is empty",
                self.group
            ));
        }
        Ok(())
    }

    fn allows(&self, verb: &str, namespace: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
            && self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }
}

/// Where a call acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    /// Lists and watches over every namespace: allowed to anyone with the verb somewhere; the
    /// answer is narrowed to the namespaces they have it in.
    AllNamespaces,
    /// Cluster-wide objects and operations (nodes, queues, maintenance, usage of every tenant).
    Cluster,
    /// An archived workflow by uid: its namespace is read from the archive.
    ArchivedUid(String),
    /// A workflow by uid, live or archived: its namespace is read from the store.
    WorkflowUid(String),
    /// Anyone signed in (version, their own user info, the cluster's read-only views).
    Anyone,
}

/// What a call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub verb: &'static str,
    /// Kubernetes' resource name (`workflows`, `workflowtemplates`, …).
    pub resource: &'static str,
    pub scope: Scope,
}

fn resource_of(segment: &str) -> Option<&'static str> {
    Some(match segment {
        "workflows" | "workflow-events" => "workflows",
        "workflow-templates" => "workflowtemplates",
        "cron-workflows" => "cronworkflows",
        "cluster-workflow-templates" => "clusterworkflowtemplates",
        "archived-workflows" => "workflows",
        "workflow-event-bindings" => "workfloweventbindings",
        "event-sources" => "eventsources",
        "sensors" => "sensors",
        "events" => "workfloweventbindings",
        _ => return None,
    })
}

/// What `METHOD path?query` needs.
pub fn need(method: &str, path: &str, query: Option<&str>) -> Need {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let write_verb = |m: &str| match m {
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    };
    let reading = matches!(method, "GET" | "HEAD");
    match segs.as_slice() {
        // Argo's artifact server: reading a workflow's artifacts is reading the workflow.
        ["artifacts" | "input-artifacts" | "artifact-files", ns, ..] => Need {
            verb: "get",
            resource: "workflows",
            scope: namespace_scope(ns),
        },
        ["artifacts-by-uid" | "input-artifacts-by-uid", uid, ..] => Need {
            verb: "get",
            resource: "workflows",
            scope: Scope::WorkflowUid(uid.to_string()),
        },
        ["api", "v1", "stream", "events", ns, ..] => Need {
            verb: "watch",
            resource: "workflows",
            scope: namespace_scope(ns),
        },
        ["api", "v1", "stream", kind, ns, ..] if resource_of(kind).is_some() => Need {
            verb: "watch",
            resource: resource_of(kind).unwrap_or("workflows"),
            scope: namespace_scope(ns),
        },
        ["api", "v1", "archived-workflows-label-keys" | "archived-workflows-label-values"] => {
            Need {
                verb: "list",
                resource: "workflows",
                scope: Scope::AllNamespaces,
            }
        }
        ["api", "v1", "archived-workflows"] => Need {
            verb: "list",
            resource: "workflows",
            scope: query
                .and_then(|q| query_value(q, "namespace"))
                .filter(|n| !n.is_empty())
                .map_or(Scope::AllNamespaces, Scope::Namespace),
        },
        ["api", "v1", "archived-workflows", uid, rest @ ..] => Need {
            verb: if rest.is_empty() {
                write_verb(method)
            } else {
                // retry, resubmit: a new workflow is made
                "create"
            },
            resource: "workflows",
            scope: Scope::ArchivedUid(uid.to_string()),
        },
        ["api", "v1", "cluster-workflow-templates", ..] => Need {
            verb: if reading { "get" } else { write_verb(method) },
            resource: "clusterworkflowtemplates",
            scope: if reading {
                Scope::Anyone
            } else {
                Scope::Cluster
            },
        },
        ["api", "v1", kind, ns, rest @ ..] if resource_of(kind).is_some() => {
            let resource = resource_of(kind).unwrap_or("workflows");
            let verb = if *kind == "workflow-events" {
                "watch"
            } else if reading {
                if rest.is_empty() {
                    "list"
                } else {
                    "get"
                }
            } else if rest.len() >= 2
                || rest.first() == Some(&"lint")
                || rest.first() == Some(&"submit")
            {
                // …/{name}/suspend, …/lint, …/submit: Argo maps actions to update, lint to
                // create, submit to create.
                if rest.first() == Some(&"lint") || rest.first() == Some(&"submit") {
                    "create"
                } else {
                    "update"
                }
            } else {
                write_verb(method)
            };
            Need {
                verb,
                resource,
                scope: namespace_scope(ns),
            }
        }
        // Anyone signed in may ask for a namespace (and see their requests); deciding is an
        // admin's.
        ["api", "v1", "namespace-requests", _, "approve" | "deny"] => Need {
            verb: "update",
            resource: "namespacerequests",
            scope: Scope::Cluster,
        },
        ["api", "v1", "namespace-requests", ..] => Need {
            verb: if reading { "get" } else { "create" },
            resource: "namespacerequests",
            scope: Scope::Anyone,
        },
        ["api", "v1", "onyx", "usage", ..] | ["api", "v1", "usage", ..] => Need {
            verb: "get",
            resource: "usage",
            scope: Scope::Cluster,
        },
        // The cluster's views (every tenant's usage, queues and nodes) and its operations are
        // an admin's, as are the server's metrics (every namespace's counts).
        ["api", "v1", "onyx", area, ..] => Need {
            verb: if reading { "get" } else { write_verb(method) },
            resource: match *area {
                "nodes" => "nodes",
                "queues" => "queues",
                "maintenance" | "emergency-stop" => "maintenance",
                _ => "namespaces",
            },
            scope: Scope::Cluster,
        },
        ["metrics"] => Need {
            verb: "get",
            resource: "metrics",
            scope: Scope::Cluster,
        },
        // What every signed-in user may call: the server's version and settings, who they
        // are, and the UI's usage beacon (Argo's `tracking/event`).
        ["api", "v1", "info" | "version" | "userinfo"] | ["api", "v1", "tracking", "event"] => {
            Need {
                verb: if reading { "get" } else { write_verb(method) },
                resource: "info",
                scope: Scope::Anyone,
            }
        }
        // Anything else a route serves has not said what it needs: an admin's only, so that a
        // route added without its entry here is closed, never open.
        _ => Need {
            verb: if reading { "get" } else { write_verb(method) },
            resource: "undeclared",
            scope: Scope::Cluster,
        },
    }
}

/// A Kubernetes namespace name: a DNS-1123 label (lower-case letters, digits and '-', at most
/// 63, starting and ending with a letter or digit).
pub fn is_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

/// A Kubernetes object name: a lowercase RFC 1123 subdomain (letters, digits, '-' and '.', at
/// most 253, starting and ending with a letter or digit).
pub fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The path of a request with each segment percent-decoded once, as the router decodes
/// them; `None` when a decoded segment is `.`, `..` or holds a `/` or a NUL (no resource is
/// named so, and authorizing one spelling while the handler reads another is how bypasses
/// are made).
pub fn decoded_path(raw: &str) -> Option<String> {
    let mut out = Vec::new();
    for seg in raw.split('/') {
        let d = percent_decode(seg)?;
        if d == "." || d == ".." || d.contains('/') || d.contains('\0') {
            return None;
        }
        out.push(d);
    }
    Some(out.join("/"))
}

fn percent_decode(s: &str) -> Option<String> {
    // A `%` not followed by two hex digits is refused: the router would keep it as it is,
    // but no name ONYX serves has one, and what is refused cannot be read two ways.
    let b = s.as_bytes();
    let malformed = b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// RFC 3986's unreserved characters, which a path or query component keeps as they are.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` as one component of a URL's path or query (every byte but the unreserved encoded).
pub fn encode_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// A percent-encoded component decoded, invalid UTF-8 replaced.
pub fn decode_component_lossy(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn namespace_scope(ns: &str) -> Scope {
    if ns.is_empty() {
        Scope::AllNamespaces
    } else {
        Scope::Namespace(ns.to_string())
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
    /// The server's own token, or a member of an admin group: every verb everywhere.
    pub admin: bool,
}

/// The rules of one server: grants and admin groups from its config.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub grants: Vec<Grant>,
    pub admin_groups: Vec<String>,
}

/// What a refusal says: the permission that is missing, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub message: String,
}

/// Namespaces a principal may `verb` `resource` in: `None` means all of them.
pub type Allowed = Option<BTreeSet<String>>;

impl Rules {
    pub fn is_admin(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| self.admin_groups.contains(g))
    }

    /// The namespaces `p` may `verb` in (`None`: every namespace).
    pub fn namespaces(&self, p: &Principal, verb: &str) -> Allowed {
        if p.admin {
            return None;
        }
        let mut out = BTreeSet::new();
        for g in self.grants.iter().filter(|g| p.groups.contains(&g.group)) {
            if !g.verbs.iter().any(|v| v == "*" || v == verb) {
                continue;
            }
            for n in &g.namespaces {
                if n == "*" {
                    return None;
                }
                out.insert(n.clone());
            }
        }
        Some(out)
    }

    /// May `p` do what `need` says, in `namespace` (resolved by the caller for `ArchivedUid`)?
    pub fn check(&self, p: &Principal, need: &Need, namespace: Option<&str>) -> Result<(), Denied> {
        if p.admin {
            return Ok(());
        }
        let who = format!("User {:?} (groups {:?})", p.name, p.groups);
        let refuse = |place: String| {
            Denied {
            message: format!(
                "{}.argoproj.io is forbidden: {who} cannot {} resource {:?} in API group \"argoproj.io\" {place}",
                need.resource, need.verb, need.resource
            ),
        }
        };
        let scoped = match &need.scope {
            Scope::Namespace(ns) => Some(ns.as_str()),
            Scope::ArchivedUid(_) | Scope::WorkflowUid(_) => namespace,
            _ => None,
        };
        match (&need.scope, scoped) {
            (Scope::Anyone, _) => Ok(()),
            (Scope::Cluster, _) => Err(refuse(
                "at the cluster scope: it needs one of the admin groups".into(),
            )),
            (Scope::AllNamespaces, _) => match self.namespaces(p, need.verb) {
                Some(set) if set.is_empty() => {
                    Err(refuse("in any namespace: no grant gives that verb".into()))
                }
                _ => Ok(()),
            },
            (Scope::Namespace(_) | Scope::ArchivedUid(_) | Scope::WorkflowUid(_), Some(ns)) => {
                let granted = self
                    .grants
                    .iter()
                    .filter(|g| p.groups.contains(&g.group))
                    .any(|g| g.allows(need.verb, ns));
                if granted {
                    Ok(())
                } else {
                    Err(refuse(format!("in the namespace {ns:?}")))
                }
            }
            // A uid that names no workflow: refused, so that no spelling of a uid the lookup
            // misses reaches a handler that might find it.
            (Scope::Namespace(_) | Scope::ArchivedUid(_) | Scope::WorkflowUid(_), None) => Err(
                refuse("by uid: no workflow the caller may see has this uid".into()),
            ),
        }
    }
}

/// Whether two secrets are equal, in time that depends on their lengths only (a token, a
/// webhook's bearer secret, sign-in state).
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            name: "alice".into(),
            groups: vec!["team-a".into()],
            admin: false,
        }
    }

    fn rules() -> Rules {
        Rules {
            grants: vec![
                Grant {
                    group: "team-a".into(),
                    namespaces: vec!["team-a".into()],
                    verbs: all_verbs(),
                },
                Grant {
                    group: "team-a".into(),
                    namespaces: vec!["shared".into()],
                    verbs: vec!["get".into(), "list".into()],
                },
            ],
            admin_groups: vec!["onyx-admins".into()],
        }
    }

    #[test]
    fn calls_need_what_argo_servers_calls_need_of_kubernetes() {
        let n = |m, p| need(m, p, None);
        assert_eq!(
            n("POST", "/api/v1/workflows/team-a"),
            Need {
                verb: "create",
                resource: "workflows",
                scope: Scope::Namespace("team-a".into())
            }
        );
        assert_eq!(n("GET", "/api/v1/workflows/team-a/w1").verb, "get");
        assert_eq!(n("GET", "/api/v1/workflows/team-a").verb, "list");
        assert_eq!(n("GET", "/api/v1/workflows/").scope, Scope::AllNamespaces);
        assert_eq!(
            n("PUT", "/api/v1/workflows/team-a/w1/suspend").verb,
            "update"
        );
        assert_eq!(n("POST", "/api/v1/workflows/team-a/submit").verb, "create");
        assert_eq!(n("DELETE", "/api/v1/workflows/team-a/w1").verb, "delete");
        assert_eq!(n("GET", "/api/v1/workflows/team-a/w1/log").verb, "get");
        assert_eq!(n("GET", "/api/v1/workflow-events/team-a").verb, "watch");
        assert_eq!(
            n("GET", "/api/v1/workflow-templates/ns/t").resource,
            "workflowtemplates"
        );
        assert_eq!(
            n("GET", "/api/v1/archived-workflows/u-1").scope,
            Scope::ArchivedUid("u-1".into())
        );
        assert_eq!(
            need("GET", "/api/v1/archived-workflows", Some("namespace=x")).scope,
            Scope::Namespace("x".into())
        );
        assert_eq!(
            n("POST", "/api/v1/onyx/emergency-stop").scope,
            Scope::Cluster
        );
        // The cluster's views and the metrics show every tenant: an admin's.
        assert_eq!(n("GET", "/api/v1/onyx/nodes").scope, Scope::Cluster);
        assert_eq!(n("GET", "/api/v1/onyx/queues").scope, Scope::Cluster);
        assert_eq!(n("GET", "/metrics").scope, Scope::Cluster);
        assert_eq!(n("GET", "/api/v1/onyx/usage").scope, Scope::Cluster);
        assert_eq!(n("GET", "/api/v1/version").scope, Scope::Anyone);
        assert_eq!(n("GET", "/api/v1/userinfo").scope, Scope::Anyone);
        assert_eq!(n("POST", "/api/v1/tracking/event").scope, Scope::Anyone);
        // A path no entry names is closed: a route added without one serves admins only.
        assert_eq!(n("GET", "/api/v1/some-new-route").scope, Scope::Cluster);
        assert_eq!(n("POST", "/api/v1/info/x").scope, Scope::Cluster);
        assert_eq!(n("GET", "/").scope, Scope::Cluster);
        assert_eq!(
            n("PUT", "/api/v1/cluster-workflow-templates/t").scope,
            Scope::Cluster
        );
    }

    #[test]
    fn a_user_acts_only_where_a_group_of_theirs_is_granted() {
        let r = rules();
        let a = alice();
        assert!(r
            .check(&a, &need("POST", "/api/v1/workflows/team-a", None), None)
            .is_ok());
        let denied = r
            .check(&a, &need("GET", "/api/v1/workflows/team-b/w", None), None)
            .unwrap_err();
        assert_eq!(
            denied.message,
            "workflows.argoproj.io is forbidden: User \"alice\" (groups [\"team-a\"]) cannot get resource \"workflows\" in API group \"argoproj.io\" in the namespace \"team-b\""
        );
        // Read-only where only reads are granted.
        assert!(r
            .check(&a, &need("GET", "/api/v1/workflows/shared/w", None), None)
            .is_ok());
        assert!(r
            .check(&a, &need("POST", "/api/v1/workflows/shared", None), None)
            .is_err());
        // Cluster operations need an admin group.
        assert!(r
            .check(&a, &need("POST", "/api/v1/onyx/emergency-stop", None), None)
            .unwrap_err()
            .message
            .contains("admin groups"));
        let admin = Principal {
            groups: vec!["onyx-admins".into()],
            admin: r.is_admin(&["onyx-admins".into()]),
            ..a.clone()
        };
        assert!(r
            .check(
                &admin,
                &need("POST", "/api/v1/onyx/emergency-stop", None),
                None
            )
            .is_ok());
        // Lists across namespaces are narrowed to the granted ones.
        assert_eq!(
            r.namespaces(&a, "list"),
            Some(["shared".to_string(), "team-a".to_string()].into())
        );
        assert_eq!(
            r.namespaces(&a, "delete"),
            Some(["team-a".to_string()].into())
        );
        assert_eq!(r.namespaces(&admin, "delete"), None);
        // Archived workflows by uid: checked in the namespace the archive says.
        let by_uid = need("DELETE", "/api/v1/archived-workflows/u1", None);
        assert!(r.check(&a, &by_uid, Some("team-b")).is_err());
        assert!(r.check(&a, &by_uid, Some("team-a")).is_ok());
    }

    #[test]
    fn grants_with_unknown_verbs_are_config_errors() {
        let g = Grant {
            group: "g".into(),
            namespaces: vec!["n".into()],
            verbs: vec!["destroy".into()],
        };
        assert!(g.check().unwrap_err().contains("\"destroy\""));
    }

    proptest::proptest! {
        #[test]
        fn need_never_panics(method in "[A-Z]{0,7}", path in "[a-z/{}.-]{0,60}", q in proptest::option::of("[a-z=&]{0,20}")) {
            let _ = need(&method, &path, q.as_deref());
        }
    }

    #[test]
    fn paths_are_authorized_as_the_router_decodes_them() {
        assert_eq!(
            decoded_path("/api/v1/archived-workflows/u%2D1").as_deref(),
            Some("/api/v1/archived-workflows/u-1")
        );
        assert_eq!(
            need(
                "DELETE",
                &decoded_path("/api/v1/archived-workflows/u%2d1").unwrap(),
                None
            )
            .scope,
            Scope::ArchivedUid("u-1".into())
        );
        for bad in [
            "/api/v1/workflows/%2Ftmp%2Fx",
            "/artifact-files/ns/workflows/w/n/outputs/a/%2e%2e/x",
            "/api/v1/workflows/..",
            "/api/v1/workflows/a%00b",
            "/api/v1/workflows/%zz",
        ] {
            assert_eq!(decoded_path(bad), None, "{bad}");
        }
        assert!(is_namespace("team-a"));
        for bad in ["", "Team", "-a", "a-", "a_b", "a/b", &"a".repeat(64)] {
            assert!(!is_namespace(bad), "{bad}");
        }
    }

    #[test]
    fn a_uid_the_lookup_misses_is_refused() {
        let r = rules();
        let need = Need {
            verb: "get",
            resource: "workflows",
            scope: Scope::ArchivedUid("nowhere".into()),
        };
        assert!(r.check(&alice(), &need, None).is_err());
    }
}
