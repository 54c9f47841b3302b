//! Which fields each Argo type has, to warn about unknown ones (a typo such as `dependancies`
//! would otherwise be dropped silently, as Kubernetes' lenient decoding does).
//!
//! Kubernetes core types (containers, volumes, affinity, ...) are not walked: their fields are
//! Kubernetes', not Argo's, and pass through untouched.

use serde_json::Value;

/// `(field, type of its value)`; an empty type is a leaf or a Kubernetes type not walked.
/// A type name starting with `map:` is a map whose values have that type; lists are walked
/// element by element automatically.
fn fields(ty: &str) -> Option<&'static [(&'static str, &'static str)]> {
    Some(match ty {
        "Workflow" => &[
            ("apiVersion", ""),
            ("kind", ""),
            ("metadata", ""),
            ("spec", "WorkflowSpec"),
            ("status", ""),
        ],
        "CronWorkflow" => &[
            ("apiVersion", ""),
            ("kind", ""),
            ("metadata", ""),
            ("spec", "CronWorkflowSpec"),
            ("status", ""),
        ],
        "CronWorkflowSpec" => &[
            ("workflowSpec", "WorkflowSpec"),
            ("schedule", ""),
            ("schedules", ""),
            ("concurrencyPolicy", ""),
            ("suspend", ""),
            ("startingDeadlineSeconds", ""),
            ("successfulJobsHistoryLimit", ""),
            ("failedJobsHistoryLimit", ""),
            ("timezone", ""),
            ("workflowMetadata", ""),
            ("stopStrategy", ""),
            ("when", ""),
        ],
        "WorkflowSpec" => &[
            ("templates", "Template"),
            ("entrypoint", ""),
            ("arguments", "Arguments"),
            ("serviceAccountName", ""),
            ("automountServiceAccountToken", ""),
            ("executor", ""),
            ("volumes", ""),
            ("volumeClaimTemplates", ""),
            ("parallelism", ""),
            ("artifactRepositoryRef", ""),
            ("suspend", ""),
            ("nodeSelector", ""),
            ("affinity", ""),
            ("tolerations", ""),
            ("imagePullSecrets", ""),
            ("hostNetwork", ""),
            ("dnsPolicy", ""),
            ("dnsConfig", ""),
            ("onExit", ""),
            ("ttlStrategy", ""),
            ("activeDeadlineSeconds", ""),
            ("priority", ""),
            ("schedulerName", ""),
            ("podGC", ""),
            ("podPriorityClassName", ""),
            ("podPriority", ""),
            ("hostAliases", ""),
            ("securityContext", ""),
            ("podSpecPatch", ""),
            ("podDisruptionBudget", ""),
            ("metrics", ""),
            ("shutdown", ""),
            ("workflowTemplateRef", "WorkflowTemplateRef"),
            ("synchronization", "Synchronization"),
            ("volumeClaimGC", ""),
            ("retryStrategy", "RetryStrategy"),
            ("podMetadata", ""),
            ("templateDefaults", "Template"),
            ("archiveLogs", ""),
            ("hooks", "map:LifecycleHook"),
            ("workflowMetadata", ""),
            ("artifactGC", ""),
        ],
        "WorkflowTemplateRef" => &[("name", ""), ("clusterScope", "")],
        "Template" => &[
            ("name", ""),
            ("inputs", "Arguments"),
            ("outputs", "Outputs"),
            ("nodeSelector", ""),
            ("affinity", ""),
            ("metadata", ""),
            ("daemon", ""),
            ("steps", "WorkflowStep"),
            ("container", ""),
            ("containerSet", "ContainerSet"),
            ("script", ""),
            ("resource", "ResourceTemplate"),
            ("dag", "DAGTemplate"),
            ("suspend", "SuspendTemplate"),
            ("data", ""),
            ("http", "HTTP"),
            ("plugin", ""),
            ("volumes", ""),
            ("initContainers", ""),
            ("sidecars", ""),
            ("archiveLocation", ""),
            ("activeDeadlineSeconds", ""),
            ("retryStrategy", "RetryStrategy"),
            ("parallelism", ""),
            ("failFast", ""),
            ("tolerations", ""),
            ("schedulerName", ""),
            ("priorityClassName", ""),
            ("priority", ""),
            ("serviceAccountName", ""),
            ("automountServiceAccountToken", ""),
            ("executor", ""),
            ("hostAliases", ""),
            ("securityContext", ""),
            ("podSpecPatch", ""),
            ("metrics", ""),
            ("synchronization", "Synchronization"),
            ("memoize", "Memoize"),
            ("timeout", ""),
        ],
        "WorkflowStep" => &[
            ("name", ""),
            ("template", ""),
            ("inline", "Template"),
            ("arguments", "Arguments"),
            ("templateRef", "TemplateRef"),
            ("withItems", ""),
            ("withParam", ""),
            ("withSequence", "Sequence"),
            ("when", ""),
            ("continueOn", "ContinueOn"),
            ("onExit", ""),
            ("hooks", "map:LifecycleHook"),
        ],
        "DAGTemplate" => &[("target", ""), ("tasks", "DAGTask"), ("failFast", "")],
        "DAGTask" => &[
            ("name", ""),
            ("template", ""),
            ("inline", "Template"),
            ("arguments", "Arguments"),
            ("templateRef", "TemplateRef"),
            ("dependencies", ""),
            ("withItems", ""),
            ("withParam", ""),
            ("withSequence", "Sequence"),
            ("when", ""),
            ("continueOn", "ContinueOn"),
            ("onExit", ""),
            ("depends", ""),
            ("hooks", "map:LifecycleHook"),
        ],
        "Arguments" => &[("parameters", "Parameter"), ("artifacts", "Artifact")],
        "Outputs" => &[
            ("parameters", "Parameter"),
            ("artifacts", "Artifact"),
            ("result", ""),
            ("exitCode", ""),
        ],
        "Parameter" => &[
            ("name", ""),
            ("default", ""),
            ("value", ""),
            ("valueFrom", "ValueFrom"),
            ("globalName", ""),
            ("enum", ""),
            ("description", ""),
        ],
        "ValueFrom" => &[
            ("path", ""),
            ("jsonPath", ""),
            ("jqFilter", ""),
            ("event", ""),
            ("parameter", ""),
            ("supplied", ""),
            ("configMapKeyRef", ""),
            ("default", ""),
            ("expression", ""),
        ],
        "Artifact" => &[
            ("name", ""),
            ("path", ""),
            ("mode", ""),
            ("from", ""),
            ("globalName", ""),
            ("archive", ""),
            ("optional", ""),
            ("subPath", ""),
            ("recurseMode", ""),
            ("fromExpression", ""),
            ("artifactGC", ""),
            ("deleted", ""),
            ("archiveLogs", ""),
            ("s3", ""),
            ("git", ""),
            ("http", ""),
            ("artifactory", ""),
            ("hdfs", ""),
            ("raw", ""),
            ("oss", ""),
            ("gcs", ""),
            ("azure", ""),
        ],
        "RetryStrategy" => &[
            ("limit", ""),
            ("retryPolicy", ""),
            ("backoff", "Backoff"),
            ("affinity", ""),
            ("expression", ""),
        ],
        "Backoff" => &[("duration", ""), ("factor", ""), ("maxDuration", "")],
        "ResourceTemplate" => &[
            ("action", ""),
            ("mergeStrategy", ""),
            ("manifest", ""),
            ("manifestFrom", ""),
            ("setOwnerReference", ""),
            ("successCondition", ""),
            ("failureCondition", ""),
            ("flags", ""),
        ],
        "SuspendTemplate" => &[("duration", "")],
        "ContinueOn" => &[("error", ""), ("failed", "")],
        "LifecycleHook" => &[
            ("template", ""),
            ("arguments", "Arguments"),
            ("templateRef", "TemplateRef"),
            ("expression", ""),
        ],
        "Sequence" => &[("count", ""), ("start", ""), ("end", ""), ("format", "")],
        "TemplateRef" => &[("name", ""), ("template", ""), ("clusterScope", "")],
        "Synchronization" => &[
            ("semaphore", ""),
            ("mutex", ""),
            ("semaphores", ""),
            ("mutexes", ""),
        ],
        "Memoize" => &[("key", ""), ("cache", ""), ("maxAge", "")],
        "ContainerSet" => &[
            ("containers", ""),
            ("volumeMounts", ""),
            ("retryStrategy", ""),
        ],
        "HTTP" => &[
            ("method", ""),
            ("url", ""),
            ("headers", ""),
            ("timeoutSeconds", ""),
            ("successCondition", ""),
            ("body", ""),
            ("bodyFrom", ""),
            ("insecureSkipVerify", ""),
        ],
        _ => return None,
    })
}

/// Every unknown field under `value` read as type `ty`, as field paths
/// (`spec.templates[0].contaner`).
pub fn unknown_fields(value: &Value, ty: &str, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                unknown_fields(item, ty, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            if let Some(inner) = ty.strip_prefix("map:") {
                for (k, v) in map {
                    unknown_fields(v, inner, &join(path, k), out);
                }
                return;
            }
            let Some(known) = fields(ty) else { return };
            for (k, v) in map {
                let child = join(path, k);
                match known.iter().find(|(name, _)| name == k) {
                    Some((_, child_ty)) if !child_ty.is_empty() => {
                        unknown_fields(v, child_ty, &child, out)
                    }
                    Some(_) => {}
                    None => out.push(child),
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
