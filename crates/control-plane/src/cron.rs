//! CronWorkflows: when each fires (a pure function of its spec, status and the time) and the
//! loop that fires them.
//!
//! Argo's rules (v3.5.6 `workflow/cron/operator.go`), kept here:
//! - a run scheduled for time `t` creates the workflow `<cron name>-<t as Unix seconds>`; the
//!   name makes a run exactly-once (a second attempt finds it already exists);
//! - a schedule missed while the controller was down runs once (the latest missed time) only if
//!   `startingDeadlineSeconds` is set and that time is still within the deadline;
//! - `concurrencyPolicy`: `Allow` runs alongside active runs, `Forbid` skips while one is
//!   active, `Replace` terminates the active runs first;
//! - `successfulJobsHistoryLimit` (default 3) and `failedJobsHistoryLimit` (default 1) bound the
//!   finished runs kept.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use store::ListQuery;
use workflow_engine::Event;

use crate::error::ApiError;
use crate::state::AppState;
pub use cron_schedule::Schedule;
use workflow_runtime::now;

/// What to do about a CronWorkflow now.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Nothing,
    /// Run the schedule of this time.
    Run(DateTime<Utc>),
    /// A schedule past its starting deadline (or missed while no server ran, without one):
    /// not run.
    Missed(DateTime<Utc>),
}

/// Argo's firing rule (`cron/operator.go`), as a function of the spec, the last run, when
/// this server's cron loop started (`up_since`) and the time:
/// - a time that came due while the loop ran is run, however late the loop saw it, unless a
///   `startingDeadlineSeconds` has passed since;
/// - of the times that came due before it started (while no server ran), only the latest is
///   run, and only if `startingDeadlineSeconds` is set and has not passed
///   (`shouldOutstandingWorkflowsBeRun`); it is run before anything that came due since.
pub fn decide(
    schedule: &Schedule,
    suspended: bool,
    starting_deadline: Option<i64>,
    last_scheduled: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    up_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    if suspended {
        return Decision::Nothing;
    }
    let within = |t: DateTime<Utc>| starting_deadline.is_none_or(|d| (now - t).num_seconds() < d);
    let mut anchor = last_scheduled.unwrap_or(created);
    let outstanding = schedule.latest_in(anchor, up_since.min(now));
    if let Some(m) = outstanding {
        if starting_deadline.is_some() && within(m) {
            return Decision::Run(m);
        }
        // Skipped; what came due since is judged on its own.
        anchor = m;
    }
    match schedule.latest_in(anchor, now) {
        Some(t) if within(t) => Decision::Run(t),
        Some(t) => Decision::Missed(t),
        None => outstanding.map_or(Decision::Nothing, Decision::Missed),
    }
}

/// Check a CronWorkflow's own fields.
pub fn validate(obj: &Value) -> Result<(), ApiError> {
    let spec = &obj["spec"];
    let schedule = spec["schedule"].as_str().unwrap_or_default();
    if schedule.is_empty() {
        return Err(ApiError::InvalidArgument(
            "cronWorkflow.spec.schedule is required".into(),
        ));
    }
    Schedule::parse(schedule, spec["timezone"].as_str().unwrap_or_default())
        .map_err(|e| ApiError::InvalidArgument(format!("cronWorkflow.spec.{e}")))?;
    match spec["concurrencyPolicy"].as_str() {
        None | Some("") | Some("Allow") | Some("Forbid") | Some("Replace") => {}
        Some(other) => {
            return Err(ApiError::InvalidArgument(format!(
                "cronWorkflow.spec.concurrencyPolicy {other:?}: expected Allow, Forbid or Replace"
            )))
        }
    }
    if !spec["workflowSpec"].is_object() {
        return Err(ApiError::InvalidArgument(
            "cronWorkflow.spec.workflowSpec is required".into(),
        ));
    }
    Ok(())
}

/// The Workflow a CronWorkflow runs (Argo's `ConvertCronWorkflowToWorkflow`).
pub fn workflow_from(cron: &Value, name: &str) -> Value {
    let mut labels = cron["spec"]["workflowMetadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert("workflows.argoproj.io/cron-workflow".into(), json!(name));
    let mut meta = json!({"generateName": format!("{name}-"), "labels": labels});
    if let Some(a) = cron["spec"]["workflowMetadata"]["annotations"].as_object() {
        meta["annotations"] = Value::Object(a.clone());
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": meta,
        "spec": cron["spec"]["workflowSpec"].clone(),
    })
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Fire due CronWorkflows, once a second, for as long as the server runs.
pub async fn run(state: Arc<AppState>) {
    // Times that came due before now came due while no server fired them.
    let up_since = now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let rows = match state.ctl.store.objects("CronWorkflow", None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cron: reading CronWorkflows: {e}");
                continue;
            }
        };
        for row in rows {
            if let Err(e) = step(&state, &row, up_since).await {
                tracing::warn!("cron {}/{}: {e}", row.namespace, row.name);
            }
        }
    }
}

/// A CronWorkflow's `status` as Argo v3.5 sends it: always an object with `active`,
/// `lastScheduledTime` and `conditions` (Go's `CronWorkflowStatus` has no `omitempty`), kept
/// from `status` where it has them. The lists are `[]` rather than Go's `null`, which every Go
/// client reads alike and the strict SDKs accept; `lastScheduledTime` is `null` until it fires.
pub fn status_object(status: &Value) -> Value {
    let mut out = status.as_object().cloned().unwrap_or_default();
    for list in ["active", "conditions"] {
        if !out.get(list).is_some_and(Value::is_array) {
            out.insert(list.into(), json!([]));
        }
    }
    out.entry("lastScheduledTime").or_insert(Value::Null);
    Value::Object(out)
}

/// What one look at a CronWorkflow decides, given its runs (newest first) and the time.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Submit this workflow (named after its scheduled time).
    pub submit: Option<Value>,
    /// Terminate these runs first (`Replace`).
    pub terminate: Vec<String>,
    /// Delete these finished runs (history limits).
    pub delete: Vec<String>,
    /// The CronWorkflow's new body, if its status changed.
    pub updated: Option<Value>,
}

fn is_done(w: &Value) -> bool {
    matches!(
        w["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Error")
    )
}

/// Argo's CronWorkflow rules as a pure function of the object, its runs, when the cron loop
/// started and the time.
pub fn plan(
    cron: &Value,
    runs: &[Value],
    created: DateTime<Utc>,
    up_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Plan {
    let mut out = Plan::default();
    let spec = &cron["spec"];
    let name = cron["metadata"]["name"].as_str().unwrap_or_default();
    let Ok(schedule) = Schedule::parse(
        spec["schedule"].as_str().unwrap_or_default(),
        spec["timezone"].as_str().unwrap_or_default(),
    ) else {
        return out;
    };
    let mut cron = cron.clone();
    let mut changed = false;
    let active: Vec<&Value> = runs.iter().filter(|w| !is_done(w)).collect();
    let decision = decide(
        &schedule,
        spec["suspend"].as_bool() == Some(true),
        spec["startingDeadlineSeconds"].as_i64(),
        parse_time(&cron["status"]["lastScheduledTime"]),
        created,
        up_since,
        now,
    );
    if let Decision::Run(t) = decision {
        let policy = spec["concurrencyPolicy"].as_str().unwrap_or("Allow");
        let blocked = policy == "Forbid" && !active.is_empty();
        if policy == "Replace" {
            out.terminate = active
                .iter()
                .filter_map(|w| w["metadata"]["name"].as_str().map(String::from))
                .collect();
        }
        if !blocked {
            let mut wf = workflow_from(&cron, name);
            wf["metadata"]["name"] = json!(format!("{name}-{}", t.timestamp()));
            wf["metadata"]["annotations"]["workflows.argoproj.io/scheduled-time"] =
                json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            out.submit = Some(wf);
        }
        cron["status"]["lastScheduledTime"] =
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        changed = true;
    }
    // History limits: the oldest finished runs beyond each limit go.
    let limit =
        |field: &str, default: usize| spec[field].as_u64().map(|x| x as usize).unwrap_or(default);
    for (phases, keep) in [
        (&["Succeeded"][..], limit("successfulJobsHistoryLimit", 3)),
        (&["Failed", "Error"][..], limit("failedJobsHistoryLimit", 1)),
    ] {
        let done = runs.iter().filter(|w| {
            w["status"]["phase"]
                .as_str()
                .is_some_and(|p| phases.contains(&p))
        });
        out.delete.extend(
            done.skip(keep)
                .filter_map(|w| w["metadata"]["name"].as_str().map(String::from)),
        );
    }
    let ns = cron["metadata"]["namespace"].clone();
    let active_refs: Vec<Value> = active
        .iter()
        .map(|w| json!({"name": w["metadata"]["name"], "namespace": ns, "uid": w["metadata"]["uid"]}))
        .collect();
    if cron["status"]["active"].as_array().map_or(0, Vec::len) != active_refs.len() {
        cron["status"]["active"] = json!(active_refs);
        changed = true;
    }
    if changed {
        out.updated = Some(cron);
    }
    out
}

/// Carry out one CronWorkflow's plan.
async fn step(
    state: &Arc<AppState>,
    row: &store::ObjectRow,
    up_since: DateTime<Utc>,
) -> Result<(), ApiError> {
    let cron: Value = serde_json::from_str(&row.body).unwrap_or_default();
    let created = parse_time(&cron["metadata"]["creationTimestamp"])
        .unwrap_or_else(|| Utc.timestamp_nanos(row.created_ns));
    let ns = row.namespace.clone();
    let children = ListQuery {
        namespace: Some(ns.clone()),
        selector: format!("workflows.argoproj.io/cron-workflow={}", row.name)
            .parse()
            .map_err(|e: store::SelectorError| ApiError::Internal(e.to_string()))?,
        ..Default::default()
    };
    let runs: Vec<Value> = state
        .ctl
        .store
        .list_workflows(&children)
        .await?
        .items
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    let mut p = plan(&cron, &runs, created, up_since, now());
    for name in &p.terminate {
        if let Some(r) = state.ctl.store.workflow(&ns, name).await? {
            let _ = state
                .ctl
                .send(&r, Event::Shutdown { terminate: true })
                .await;
        }
    }
    if let Some(wf) = p.submit.take() {
        match crate::submit::submit(state, &ns, wf, &[], false).await {
            // Already there: this schedule was run before (exactly once, by name).
            Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
            Err(e) => {
                let updated = p.updated.get_or_insert_with(|| cron.clone());
                updated["status"]["conditions"] = json!([{"type": "SubmissionError", "status": "True", "message": e.to_string()}]);
            }
        }
    }
    for name in &p.delete {
        if let Some(r) = state.ctl.store.workflow(&ns, name).await? {
            state.ctl.delete(&r).await?;
        }
    }
    if let Some(body) = p.updated {
        let mut r = row.clone();
        r.body = body.to_string();
        state.ctl.store.put_object(r, false).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, m, s).unwrap()
    }

    #[test]
    fn fires_on_time_once() {
        let s = Schedule::parse("*/10 * * * *", "").unwrap();
        let created = at(9, 55, 0);
        assert_eq!(
            decide(&s, false, None, None, created, created, at(9, 59, 0)),
            Decision::Nothing
        );
        assert_eq!(
            decide(&s, false, None, None, created, created, at(10, 0, 1)),
            Decision::Run(at(10, 0, 0))
        );
        // Once run, the same time is not due again.
        assert_eq!(
            decide(
                &s,
                false,
                None,
                Some(at(10, 0, 0)),
                created,
                created,
                at(10, 0, 5)
            ),
            Decision::Nothing
        );
        assert_eq!(
            decide(&s, true, None, None, created, created, at(10, 0, 1)),
            Decision::Nothing
        );
    }

    #[test]
    fn missed_schedules_run_once_only_within_the_starting_deadline() {
        let s = Schedule::parse("0 * * * *", "").unwrap();
        let last = Some(at(6, 0, 0));
        let created = at(5, 0, 0);
        // Down from 06:30, up again at 09:20: 07:00, 08:00 and 09:00 were missed.
        let up = at(9, 20, 0);
        assert_eq!(
            decide(&s, false, None, last, created, up, at(9, 20, 1)),
            Decision::Missed(at(9, 0, 0))
        );
        assert_eq!(
            decide(&s, false, Some(3600), last, created, up, at(9, 20, 1)),
            Decision::Run(at(9, 0, 0))
        );
        assert_eq!(
            decide(&s, false, Some(600), last, created, up, at(9, 20, 1)),
            Decision::Missed(at(9, 0, 0))
        );
        // Once run (or skipped), the schedule goes on from what came due since the start.
        assert_eq!(
            decide(
                &s,
                false,
                Some(3600),
                Some(at(9, 0, 0)),
                created,
                up,
                at(10, 0, 2)
            ),
            Decision::Run(at(10, 0, 0))
        );
        assert_eq!(
            decide(&s, false, None, last, created, up, at(10, 0, 2)),
            Decision::Run(at(10, 0, 0))
        );
    }

    /// The outstanding run comes first, even when a new time came due before the loop's first
    /// look (Argo runs outstanding workflows when the controller starts).
    #[test]
    fn an_outstanding_run_comes_before_what_came_due_since_the_start() {
        let s = Schedule::parse("@every 2s", "").unwrap();
        let last = Some(at(10, 0, 0));
        let up = at(10, 0, 7);
        // 10:00:02, :04, :06 came due while down; :08 after the start, before the first look.
        assert_eq!(
            decide(&s, false, Some(60), last, at(9, 0, 0), up, at(10, 0, 9)),
            Decision::Run(at(10, 0, 6))
        );
        assert_eq!(
            decide(
                &s,
                false,
                Some(60),
                Some(at(10, 0, 6)),
                at(9, 0, 0),
                up,
                at(10, 0, 9)
            ),
            Decision::Run(at(10, 0, 8))
        );
        // Without a deadline the outstanding ones are skipped, the new one runs.
        assert_eq!(
            decide(&s, false, None, last, at(9, 0, 0), up, at(10, 0, 9)),
            Decision::Run(at(10, 0, 8))
        );
        // A time this server saw come due runs however late its loop looked.
        assert_eq!(
            decide(
                &s,
                false,
                None,
                Some(at(10, 0, 8)),
                at(9, 0, 0),
                up,
                at(10, 0, 40)
            ),
            Decision::Run(at(10, 0, 40))
        );
    }

    #[test]
    fn time_zones_and_descriptors() {
        let s = Schedule::parse("0 9 * * *", "Asia/Tokyo").unwrap();
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            s.next_after(at(23, 0, 0) - chrono::Duration::days(1)),
            Some(at(0, 0, 0))
        );
        let h = Schedule::parse("@hourly", "").unwrap();
        assert_eq!(h.next_after(at(10, 30, 0)), Some(at(11, 0, 0)));
        assert!(Schedule::parse("* * * *", "")
            .unwrap_err()
            .contains("expected 5 fields"));
        assert!(Schedule::parse("0 9 * * *", "Mars/Base")
            .unwrap_err()
            .contains("IANA"));
    }

    fn cron(policy: &str) -> Value {
        json!({"metadata": {"name": "c", "namespace": "ns"},
               "spec": {"schedule": "0 * * * *", "concurrencyPolicy": policy,
                        "workflowSpec": {"entrypoint": "main"}},
               "status": {"lastScheduledTime": "2026-01-05T09:00:00Z"}})
    }

    fn run(name: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "uid": name}, "status": {"phase": phase}})
    }

    #[test]
    fn concurrency_policies() {
        let created = at(0, 0, 0);
        let now = at(10, 0, 2);
        let busy = vec![run("c-1", "Running")];
        let allow = plan(&cron("Allow"), &busy, created, created, now);
        let submitted = allow.submit.expect("Allow runs alongside");
        assert_eq!(
            submitted["metadata"]["name"],
            format!("c-{}", at(10, 0, 0).timestamp())
        );
        assert_eq!(
            submitted["metadata"]["labels"]["workflows.argoproj.io/cron-workflow"],
            "c"
        );
        let forbid = plan(&cron("Forbid"), &busy, created, created, now);
        assert!(forbid.submit.is_none(), "Forbid skips while one runs");
        assert_eq!(
            forbid.updated.unwrap()["status"]["lastScheduledTime"],
            "2026-01-05T10:00:00Z",
            "the skipped time is not tried again"
        );
        let replace = plan(&cron("Replace"), &busy, created, created, now);
        assert_eq!(replace.terminate, vec!["c-1"]);
        assert!(replace.submit.is_some());
        let idle = plan(
            &cron("Forbid"),
            &[run("c-0", "Succeeded")],
            created,
            created,
            now,
        );
        assert!(idle.submit.is_some(), "Forbid runs when nothing is active");
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_runs() {
        let mut c = cron("Allow");
        c["spec"]["successfulJobsHistoryLimit"] = json!(2);
        // Newest first, as the store lists them.
        let runs = vec![
            run("s4", "Succeeded"),
            run("f2", "Failed"),
            run("s3", "Succeeded"),
            run("e1", "Error"),
            run("s2", "Succeeded"),
            run("r", "Running"),
            run("s1", "Succeeded"),
        ];
        let p = plan(&c, &runs, at(0, 0, 0), at(0, 0, 0), at(9, 30, 0));
        assert_eq!(
            p.delete,
            vec!["s2", "s1", "e1"],
            "keep 2 succeeded, 1 failed (the default)"
        );
        assert!(p.submit.is_none());
        assert_eq!(p.updated.unwrap()["status"]["active"][0]["name"], "r");
    }

    #[test]
    fn a_status_is_always_an_object_with_argos_three_fields() {
        assert_eq!(
            status_object(&Value::Null),
            json!({"active": [], "conditions": [], "lastScheduledTime": null})
        );
        let fired = json!({"active": [{"name": "r"}], "lastScheduledTime": "2026-01-05T09:00:00Z"});
        assert_eq!(
            status_object(&fired),
            json!({"active": [{"name": "r"}], "conditions": [], "lastScheduledTime": "2026-01-05T09:00:00Z"})
        );
    }
}
