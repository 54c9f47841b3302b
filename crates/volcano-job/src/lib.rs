//! A Volcano `batch.volcano.sh/v1alpha1` `Job` as ONYX runs it: one gang (minMember =
//! `minAvailable`, the job's queue and priority class) whose replicas are pods named
//! `<job>-<task>-<index>` as Volcano names them, each with the environment Volcano's plugins
//! give (`pytorch`: `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK`; `env`:
//! `VC_TASK_INDEX`/`VK_TASK_INDEX`), and the job's end decided from its replicas' ends by
//! Volcano's rules (`minSuccess`, the `TaskCompleted → CompleteJob` policy, a failed replica
//! fails the job). Pure: the server runs the replicas and feeds their ends back.

#![forbid(unsafe_code)]

use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JobError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> JobError {
    JobError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// One replica: a pod of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// `<job>-<task>-<index>`.
    pub name: String,
    pub task: String,
    pub index: u32,
    /// The task's pod template `spec` (containers, …), with the plugins' environment added to
    /// every container.
    pub pod_spec: Value,
}

/// What the job asks of the scheduler and the replicas to run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    pub name: String,
    pub queue: String,
    pub min_available: u32,
    pub priority_class: String,
    pub replicas: Vec<Replica>,
    /// Succeeded replicas that complete the job (`minSuccess`); all of them by default.
    min_success: u32,
    /// Tasks whose completion completes the job (`TaskCompleted → CompleteJob`).
    completing_tasks: Vec<String>,
}

/// Where the job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobPhase {
    Running,
    Completed,
    Failed(String),
}

impl JobPhase {
    pub fn name(&self) -> &'static str {
        match self {
            JobPhase::Running => "Running",
            JobPhase::Completed => "Completed",
            JobPhase::Failed(_) => "Failed",
        }
    }
}

/// Whether `v` is a Volcano Job manifest.
pub fn is_volcano_job(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Job")
        && v.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("batch.volcano.sh/"))
}

fn as_u32(v: &Value, field: &str) -> Result<Option<u32>, JobError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(field, format!("expected a whole number, got {n}"))),
        other => Err(invalid(
            field,
            format!("expected a whole number, got {other}"),
        )),
    }
}

/// Flags of a plugin (`pytorch: ["--master=master", "--port=23456"]`).
fn plugin_flag(args: &[Value], flag: &str) -> Option<String> {
    args.iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(&format!("--{flag}=")).map(str::to_string))
}

/// Read a Job manifest into what ONYX runs. Errors name the field.
pub fn plan(job: &Value) -> Result<JobPlan, JobError> {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("metadata.name", "a Job needs a name"))?
        .to_string();
    let spec = job
        .get("spec")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("spec", "a Job needs a spec"))?;
    let tasks = spec
        .get("tasks")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("spec.tasks", "a Job needs at least one task"))?;
    let mut replicas_of = Vec::new();
    let mut total = 0u32;
    for (i, t) in tasks.iter().enumerate() {
        let field = format!("spec.tasks[{i}]");
        let task = t
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("task{i}"));
        let replicas = as_u32(
            t.get("replicas").unwrap_or(&Value::Null),
            &format!("{field}.replicas"),
        )?
        .unwrap_or(1);
        let pod_spec = t
            .pointer("/template/spec")
            .filter(|s| {
                s.get("containers")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty())
            })
            .ok_or_else(|| {
                invalid(
                    format!("{field}.template.spec.containers"),
                    "a task needs at least one container",
                )
            })?
            .clone();
        total += replicas;
        replicas_of.push((task, replicas, pod_spec, t.clone()));
    }
    let min_available = as_u32(
        spec.get("minAvailable").unwrap_or(&Value::Null),
        "spec.minAvailable",
    )?
    .unwrap_or(total);
    if min_available > total {
        return Err(invalid(
            "spec.minAvailable",
            format!("{min_available} is more than the job's {total} replicas"),
        ));
    }
    let min_success = as_u32(
        spec.get("minSuccess").unwrap_or(&Value::Null),
        "spec.minSuccess",
    )?
    .unwrap_or(total);
    let plugins = spec.get("plugins").and_then(Value::as_object);
    let pytorch = plugins
        .and_then(|p| p.get("pytorch"))
        .map(|a| a.as_array().cloned().unwrap_or_default());
    let env_plugin = plugins.is_some_and(|p| p.contains_key("env"));
    let (master, worker, port) = match &pytorch {
        Some(args) => (
            plugin_flag(args, "master").unwrap_or_else(|| "master".into()),
            plugin_flag(args, "worker").unwrap_or_else(|| "worker".into()),
            plugin_flag(args, "port").unwrap_or_else(|| "23456".into()),
        ),
        None => Default::default(),
    };
    let world_size: u32 = replicas_of
        .iter()
        .filter(|(t, ..)| *t == master || *t == worker)
        .map(|(_, n, ..)| *n)
        .sum();
    let mut completing_tasks = Vec::new();
    let mut replicas = Vec::new();
    for (task, count, pod_spec, t) in &replicas_of {
        let completes = t
            .get("policies")
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.get("event").and_then(Value::as_str) == Some("TaskCompleted")
                        && p.get("action").and_then(Value::as_str) == Some("CompleteJob")
                })
            });
        if completes {
            completing_tasks.push(task.clone());
        }
        for index in 0..*count {
            let mut env: Vec<(String, String)> = Vec::new();
            if pytorch.is_some() && (*task == master || *task == worker) {
                // Volcano names the master by DNS (`<job>-master-0.<job>`); ONYX's replicas run
                // on this machine, where that is the loopback address.
                env.push(("MASTER_ADDR".into(), "127.0.0.1".into()));
                env.push(("MASTER_PORT".into(), port.clone()));
                env.push(("WORLD_SIZE".into(), world_size.to_string()));
                let rank = if *task == worker { index + 1 } else { 0 };
                env.push(("RANK".into(), rank.to_string()));
            }
            if env_plugin {
                env.push(("VC_TASK_INDEX".into(), index.to_string()));
                env.push(("VK_TASK_INDEX".into(), index.to_string()));
            }
            let mut spec = pod_spec.clone();
            if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
                for c in containers {
                    let Some(obj) = c.as_object_mut() else {
                        continue;
                    };
                    let list = obj.entry("env").or_insert_with(|| json!([]));
                    if let Some(list) = list.as_array_mut() {
                        for (k, v) in &env {
                            list.push(json!({"name": k, "value": v}));
                        }
                    }
                }
            }
            replicas.push(Replica {
                name: format!("{name}-{task}-{index}"),
                task: task.clone(),
                index,
                pod_spec: spec,
            });
        }
    }
    Ok(JobPlan {
        name,
        queue: spec
            .get("queue")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        min_available,
        priority_class: spec
            .get("priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        replicas,
        min_success,
        completing_tasks,
    })
}

impl JobPlan {
    /// The job's phase from its replicas' ends (`Some(true)` succeeded, `Some(false)` failed,
    /// `None` still running), by Volcano's rules: a failed replica fails the job; the job
    /// completes when `minSuccess` replicas succeeded or every replica of a task with the
    /// `TaskCompleted → CompleteJob` policy did.
    pub fn phase(&self, ends: &[Option<bool>]) -> JobPhase {
        if let Some(i) = ends.iter().position(|e| *e == Some(false)) {
            return JobPhase::Failed(format!("replica {} failed", self.replicas[i].name));
        }
        let succeeded = ends.iter().filter(|e| **e == Some(true)).count() as u32;
        if succeeded >= self.min_success {
            return JobPhase::Completed;
        }
        let task_done = |task: &String| {
            self.replicas
                .iter()
                .zip(ends)
                .filter(|(r, _)| &r.task == task)
                .all(|(_, e)| *e == Some(true))
        };
        if self.completing_tasks.iter().any(task_done) {
            return JobPhase::Completed;
        }
        JobPhase::Running
    }

    /// The Job object as it stands, with Volcano's `status` (for the resource template's
    /// conditions and output parameters).
    pub fn object(&self, manifest: &Value, ends: &[Option<bool>]) -> Value {
        let mut obj = manifest.clone();
        let count = |want: Option<bool>| ends.iter().filter(|e| **e == want).count();
        let phase = self.phase(ends);
        let mut state = Map::new();
        state.insert("phase".into(), json!(phase.name()));
        if let JobPhase::Failed(why) = &phase {
            state.insert("message".into(), json!(why));
        }
        if let Some(o) = obj.as_object_mut() {
            o.insert(
                "status".into(),
                json!({"state": state, "minAvailable": self.min_available,
                       "succeeded": count(Some(true)), "failed": count(Some(false)),
                       "running": count(None)}),
            );
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
            "metadata": {"name": "ddp"},
            "spec": {"minAvailable": 3, "queue": "dedicated", "schedulerName": "volcano",
                "plugins": {"pytorch": ["--master=master", "--worker=worker", "--port=29500"], "env": []},
                "tasks": [
                    {"name": "master", "replicas": 1,
                     "policies": [{"event": "TaskCompleted", "action": "CompleteJob"}],
                     "template": {"spec": {"containers": [{"name": "c", "image": "pytorch", "command": ["train"]}]}}},
                    {"name": "worker", "replicas": 2,
                     "template": {"spec": {"containers": [{"name": "c", "image": "pytorch", "command": ["train"],
                        "env": [{"name": "MINE", "value": "1"}]}]}}}]}})
    }

    fn env(r: &Replica) -> Vec<(String, String)> {
        r.pod_spec["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn replicas_get_pytorch_ranks_as_volcano_gives_them() {
        let p = plan(&job()).unwrap();
        assert_eq!(p.queue, "dedicated");
        assert_eq!(p.min_available, 3);
        let names: Vec<&str> = p.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["ddp-master-0", "ddp-worker-0", "ddp-worker-1"]);
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            env(&p.replicas[0]),
            pairs(&[
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "29500"),
                ("WORLD_SIZE", "3"),
                ("RANK", "0"),
                ("VC_TASK_INDEX", "0"),
                ("VK_TASK_INDEX", "0")
            ])
        );
        // A worker keeps its own variables; its rank is its index + 1 (after the master).
        assert_eq!(
            env(&p.replicas[2]),
            pairs(&[
                ("MINE", "1"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "29500"),
                ("WORLD_SIZE", "3"),
                ("RANK", "2"),
                ("VC_TASK_INDEX", "1"),
                ("VK_TASK_INDEX", "1")
            ])
        );
    }

    #[test]
    fn the_job_ends_by_volcanos_rules() {
        let p = plan(&job()).unwrap();
        assert_eq!(p.phase(&[None, None, None]), JobPhase::Running);
        assert_eq!(p.phase(&[None, Some(true), None]), JobPhase::Running);
        // The master's task completes the job (TaskCompleted → CompleteJob).
        assert_eq!(p.phase(&[Some(true), None, None]), JobPhase::Completed);
        assert_eq!(
            p.phase(&[None, Some(false), None]),
            JobPhase::Failed("replica ddp-worker-0 failed".into())
        );
        let obj = p.object(&job(), &[Some(true), Some(true), None]);
        assert_eq!(obj["status"]["state"]["phase"], "Completed");
        assert_eq!(obj["status"]["succeeded"], 2);
        assert_eq!(obj["status"]["running"], 1);
        // Without the policy, every replica must succeed.
        let mut j = job();
        j["spec"]["tasks"][0]["policies"] = json!([]);
        let p = plan(&j).unwrap();
        assert_eq!(p.phase(&[Some(true), None, Some(true)]), JobPhase::Running);
        assert_eq!(
            p.phase(&[Some(true), Some(true), Some(true)]),
            JobPhase::Completed
        );
    }

    #[test]
    fn bad_jobs_name_the_field() {
        let mut j = job();
        j["spec"]["minAvailable"] = json!(4);
        assert_eq!(
            plan(&j).unwrap_err().to_string(),
            "spec.minAvailable: 4 is more than the job's 3 replicas"
        );
        j["spec"]["tasks"][1]["replicas"] = json!("two");
        assert_eq!(
            plan(&j).unwrap_err().to_string(),
            "spec.tasks[1].replicas: expected a whole number, got \"two\""
        );
        j["spec"]["tasks"][1]["replicas"] = json!(2);
        j["spec"]["tasks"][1]["template"]["spec"]["containers"] = json!([]);
        assert_eq!(
            plan(&j).unwrap_err().to_string(),
            "spec.tasks[1].template.spec.containers: a task needs at least one container"
        );
        assert_eq!(
            plan(&json!({"kind": "Job", "metadata": {"name": "x"}, "spec": {"tasks": []}}))
                .unwrap_err()
                .to_string(),
            "spec.tasks: a Job needs at least one task"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_json_plans_or_says_why(v in json_value()) {
            let _ = plan(&v);
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("spec".to_string()),
                        Just("tasks".to_string()),
                        Just("replicas".to_string()),
                        Just("template".to_string()),
                        Just("containers".to_string()),
                        Just("metadata".to_string()),
                        Just("name".to_string()),
                        Just("minAvailable".to_string()),
                        Just("plugins".to_string()),
                        Just("pytorch".to_string())
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
