//! `onyx` as a client of `onyx server` (or of any Argo Server): `argo`'s verbs and flags over
//! the REST API, and the printing of what it answers (`argo get`'s tree, YAML, JSON, the
//! usage report).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use workflow_engine::tree as render;

mod api;
mod commands;
mod files;
mod print;
pub mod usage;

pub use api::is_local;
use api::*;
pub use commands::*;
use files::*;
use print::*;

pub fn run(opts: &ClientOpts, cmd: ClientCommand) -> ExitCode {
    match run_inner(opts, cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("onyx: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    if names.is_empty() {
        bail!("name at least one workflow");
    }
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("onyx: {n}: {e:#}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_inner(o: &ClientOpts, cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(o);
    let ns = o.namespace.as_str();
    let wf_path = |n: &str| format!("/api/v1/workflows/{ns}/{n}");
    match cmd {
        ClientCommand::Submit {
            files,
            from,
            parameters,
            labels,
            generate_name,
            entrypoint,
            wait,
            watch,
            output,
        } => {
            let mut created = Vec::new();
            if let Some(from) = from {
                let (kind, name) = from.split_once('/').ok_or_else(|| {
                    anyhow!(
                        "--from {from:?}: expected KIND/NAME, e.g. workflowtemplate/my-template"
                    )
                })?;
                let kind = match kind.to_ascii_lowercase().as_str() {
                    "workflowtemplate" | "wftmpl" => "WorkflowTemplate",
                    "clusterworkflowtemplate" | "cwftmpl" => "ClusterWorkflowTemplate",
                    "cronworkflow" | "cronwf" | "cwf" => "CronWorkflow",
                    other => bail!("--from {other}/...: expected workflowtemplate, clusterworkflowtemplate or cronwf"),
                };
                let body = json!({"resourceKind": kind, "resourceName": name, "submitOptions": {
                    "parameters": parameters, "labels": labels.clone().unwrap_or_default(),
                    "generateName": generate_name.clone().unwrap_or_default(),
                    "entryPoint": entrypoint.clone().unwrap_or_default()}});
                created.push(api.json(
                    "POST",
                    &format!("/api/v1/workflows/{ns}/submit"),
                    Some(&body),
                )?);
            } else {
                if files.is_empty() {
                    bail!("name a workflow file, or --from workflowtemplate/NAME");
                }
                for mut wf in read_objects(&files)? {
                    crate::apply(
                        &mut wf,
                        &parameters,
                        labels.as_deref(),
                        generate_name.as_deref(),
                        entrypoint.as_deref(),
                    )?;
                    created.push(api.json(
                        "POST",
                        &format!("/api/v1/workflows/{ns}"),
                        Some(&json!({"workflow": wf})),
                    )?);
                }
            }
            let mut ok = true;
            for wf in &created {
                let name = wf["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if wait || watch {
                    let end = wait_for(&api, ns, &name, watch)?;
                    ok &= end["status"]["phase"] == "Succeeded";
                    if output == Format::Wide && !watch {
                        println!("{}", outcome_line(&end));
                    } else if output != Format::Wide {
                        print_obj(&end, output)?;
                    }
                } else {
                    print_obj(wf, output)?;
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ClientCommand::List {
            selector,
            limit,
            all_namespaces,
            output,
        } => {
            let scope = if all_namespaces { "" } else { ns };
            let mut q = format!("/api/v1/workflows/{scope}?");
            if let Some(s) = &selector {
                q += &format!("listOptions.labelSelector={}&", enc(s));
            }
            if limit > 0 {
                q += &format!("listOptions.limit={limit}&");
            }
            let v = api.json("GET", q.trim_end_matches(['?', '&']), None)?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            list_workflows(&items, output, all_namespaces)?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Get { name, output } => {
            print_obj(&api.json("GET", &wf_path(&name), None)?, output)?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Logs {
            name,
            pod,
            follow,
            container,
            grep,
        } => {
            let mut q = format!(
                "{}/log?logOptions.container={}&logOptions.follow={follow}",
                wf_path(&name),
                enc(&container)
            );
            if let Some(p) = &pod {
                q += &format!("&podName={}", enc(p));
            }
            if let Some(g) = &grep {
                q += &format!("&grep={}", enc(g));
            }
            let r = api.call("GET", &q, None)?;
            let mut out = std::io::stdout().lock();
            for line in BufReader::new(r.into_reader()).lines() {
                let line = line?;
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let e = &v["result"];
                if pod.is_some() {
                    writeln!(out, "{}", e["content"].as_str().unwrap_or_default())?;
                } else {
                    writeln!(
                        out,
                        "{}: {}",
                        e["podName"].as_str().unwrap_or_default(),
                        e["content"].as_str().unwrap_or_default()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Watch { name } => {
            let end = wait_for(&api, ns, &name, true)?;
            Ok(if end["status"]["phase"] == "Succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ClientCommand::Wait { names } => {
            let mut ok = true;
            let code = each(&names, |n| {
                let end = wait_for(&api, ns, n, false)?;
                println!("{}", outcome_line(&end));
                ok &= end["status"]["phase"] == "Succeeded";
                Ok(())
            })?;
            Ok(if ok { code } else { ExitCode::from(1) })
        }
        ClientCommand::Suspend { names } => each(&names, |n| {
            api.json("PUT", &format!("{}/suspend", wf_path(n)), Some(&json!({})))?;
            println!("workflow {n} suspended");
            Ok(())
        }),
        ClientCommand::Resume {
            names,
            node_field_selector,
        } => each(&names, |n| {
            let body =
                json!({"nodeFieldSelector": node_field_selector.clone().unwrap_or_default()});
            api.json("PUT", &format!("{}/resume", wf_path(n)), Some(&body))?;
            println!("workflow {n} resumed");
            Ok(())
        }),
        ClientCommand::Stop { names } => each(&names, |n| {
            api.json("PUT", &format!("{}/stop", wf_path(n)), Some(&json!({})))?;
            println!("workflow {n} stopped");
            Ok(())
        }),
        ClientCommand::Terminate { names } => each(&names, |n| {
            api.json(
                "PUT",
                &format!("{}/terminate", wf_path(n)),
                Some(&json!({})),
            )?;
            println!("workflow {n} terminated");
            Ok(())
        }),
        ClientCommand::Retry {
            names,
            restart_successful,
            node_field_selector,
            parameters,
        } => each(&names, |n| {
            let body = json!({"restartSuccessful": restart_successful,
                "nodeFieldSelector": node_field_selector.clone().unwrap_or_default(),
                "parameters": parameters});
            let wf = api.json("PUT", &format!("{}/retry", wf_path(n)), Some(&body))?;
            println!("{}", render::summary(&wf));
            Ok(())
        }),
        ClientCommand::Resubmit { names, parameters } => each(&names, |n| {
            let wf = api.json(
                "PUT",
                &format!("{}/resubmit", wf_path(n)),
                Some(&json!({"parameters": parameters})),
            )?;
            println!("{}", render::summary(&wf));
            Ok(())
        }),
        ClientCommand::Delete { names } => each(&names, |n| {
            api.json("DELETE", &wf_path(n), None)?;
            println!("Workflow '{n}' deleted");
            Ok(())
        }),
        ClientCommand::Template(c) => objects(
            &api,
            &format!("/api/v1/workflow-templates/{ns}"),
            "template",
            c,
        ),
        ClientCommand::ClusterTemplate(c) => {
            objects(&api, "/api/v1/cluster-workflow-templates", "template", c)
        }
        ClientCommand::Cron(c) => {
            let base = format!("/api/v1/cron-workflows/{ns}");
            let c = match c {
                CronCommand::Suspend { names } => {
                    return each(&names, |n| {
                        api.json("PUT", &format!("{base}/{n}/suspend"), Some(&json!({})))?;
                        println!("CronWorkflow '{n}' suspended");
                        Ok(())
                    })
                }
                CronCommand::Resume { names } => {
                    return each(&names, |n| {
                        api.json("PUT", &format!("{base}/{n}/resume"), Some(&json!({})))?;
                        println!("CronWorkflow '{n}' resumed");
                        Ok(())
                    })
                }
                CronCommand::Object(c) => c,
            };
            objects(&api, &base, "cronWorkflow", c)
        }
        ClientCommand::Node(c) => match c {
            NodeCommand::List => {
                let v = api.json("GET", "/api/v1/onyx/nodes", None)?;
                let mut rows = vec![vec![
                    "NODE".to_string(),
                    "GPUS".into(),
                    "FREE".into(),
                    "MIG".into(),
                    "PODS".into(),
                    "STATUS".into(),
                ]];
                for n in v["items"].as_array().cloned().unwrap_or_default() {
                    let mig: usize = n["mig"].as_array().map_or(0, |g| {
                        g.iter()
                            .filter(|l| l.as_array().is_some_and(|l| !l.is_empty()))
                            .count()
                    });
                    rows.push(vec![
                        n["name"].as_str().unwrap_or_default().into(),
                        n["gpus"].to_string(),
                        n["freeGpus"].to_string(),
                        mig.to_string(),
                        n["pods"].to_string(),
                        if n["cordoned"] == true {
                            "SchedulingDisabled".into()
                        } else {
                            "Ready".into()
                        },
                    ]);
                }
                table(&rows);
                Ok(ExitCode::SUCCESS)
            }
            NodeCommand::Cordon { names } => each(&names, |n| {
                api.json(
                    "PUT",
                    &format!("/api/v1/onyx/nodes/{}/cordon", enc(n)),
                    Some(&json!({})),
                )?;
                println!("node/{n} cordoned");
                Ok(())
            }),
            NodeCommand::Uncordon { names } => each(&names, |n| {
                api.json(
                    "PUT",
                    &format!("/api/v1/onyx/nodes/{}/uncordon", enc(n)),
                    Some(&json!({})),
                )?;
                println!("node/{n} uncordoned");
                Ok(())
            }),
            NodeCommand::Drain { name, grace } => {
                let v = api.json(
                    "PUT",
                    &format!(
                        "/api/v1/onyx/nodes/{}/drain?graceSeconds={grace}",
                        enc(&name)
                    ),
                    Some(&json!({})),
                )?;
                println!("node/{name} cordoned");
                for p in v["pods"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "waiting for pod {} (grace {grace}s, then evicted)",
                        p.as_str().unwrap_or_default()
                    );
                }
                loop {
                    let nodes = api.json("GET", "/api/v1/onyx/nodes", None)?;
                    let left = nodes["items"]
                        .as_array()
                        .and_then(|a| a.iter().find(|n| n["name"] == name.as_str()))
                        .map_or(0, |n| n["pods"].as_u64().unwrap_or(0));
                    if left == 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                println!("node/{name} drained");
                Ok(ExitCode::SUCCESS)
            }
        },
        ClientCommand::Maintenance(c) => {
            let v = match c {
                MaintenanceCommand::Status => api.json("GET", "/api/v1/onyx/maintenance", None)?,
                MaintenanceCommand::Start => {
                    api.json("POST", "/api/v1/onyx/maintenance/start", Some(&json!({})))?
                }
            };
            print!("{}", print::to_yaml(&v));
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Usage(UsageCommand::Report { month, output }) => {
            let path = match &month {
                Some(m) => format!("/api/v1/usage?month={}", enc(m)),
                None => "/api/v1/usage".to_string(),
            };
            let v = api.json("GET", &path, None)?;
            crate::usage::print(&v, output, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Namespace(c) => {
            let v = match c {
                NamespaceCommand::Request {
                    namespace,
                    ticket,
                    gpus,
                    group,
                    reason,
                } => api.json(
                    "POST",
                    "/api/v1/namespace-requests",
                    Some(
                        &serde_json::json!({"namespace": namespace, "ticketId": ticket,
                        "gpuQuota": gpus, "group": group, "reason": reason}),
                    ),
                )?,
                NamespaceCommand::Approve { namespace } => api.json(
                    "PUT",
                    &format!("/api/v1/namespace-requests/{}/approve", enc(&namespace)),
                    None,
                )?,
                NamespaceCommand::Deny { namespace } => api.json(
                    "PUT",
                    &format!("/api/v1/namespace-requests/{}/deny", enc(&namespace)),
                    None,
                )?,
                NamespaceCommand::List => {
                    let v = api.json("GET", "/api/v1/namespace-requests", None)?;
                    let mut rows = vec![vec![
                        "NAMESPACE".to_string(),
                        "GROUP".into(),
                        "GPUS".into(),
                        "TICKET".into(),
                        "REQUESTER".into(),
                        "PHASE".into(),
                    ]];
                    for r in v["items"].as_array().cloned().unwrap_or_default() {
                        let s = &r["spec"];
                        let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
                        rows.push(vec![
                            text(&s["namespace"]),
                            text(&s["group"]),
                            s["gpuQuota"].as_u64().map_or("-".into(), |g| g.to_string()),
                            text(&s["ticketId"]),
                            text(&s["requester"]),
                            text(&r["status"]["phase"]),
                        ]);
                    }
                    table(&rows);
                    return Ok(ExitCode::SUCCESS);
                }
            };
            println!(
                "namespace request {}: {}",
                v["metadata"]["name"].as_str().unwrap_or_default(),
                v["status"]["phase"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Queue(c) => match c {
            QueueCommand::List => {
                let v = api.json("GET", "/api/v1/onyx/queues", None)?;
                let mut rows = vec![vec![
                    "QUEUE".to_string(),
                    "UNIT".into(),
                    "WEIGHT".into(),
                    "CAPABILITY".into(),
                    "ALLOCATED".into(),
                    "RUNNING".into(),
                    "PENDING".into(),
                ]];
                for q in v["items"].as_array().cloned().unwrap_or_default() {
                    let gpus =
                        |v: &Value| v.as_u64().map_or("-".to_string(), |g| format!("{g} GPU"));
                    rows.push(vec![
                        q["name"].as_str().unwrap_or_default().into(),
                        q["unit"].as_str().unwrap_or_default().into(),
                        q["weight"].to_string(),
                        gpus(&q["capabilityGpus"]),
                        format!("{:.2} GPU", q["allocatedGpus"].as_f64().unwrap_or(0.0)),
                        q["running"].to_string(),
                        q["pending"].to_string(),
                    ]);
                }
                table(&rows);
                Ok(ExitCode::SUCCESS)
            }
            QueueCommand::Get { name, output } => {
                let v = api.json("GET", &format!("/api/v1/onyx/queues/{}", enc(&name)), None)?;
                match output {
                    Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                    _ => print!("{}", print::to_yaml(&v)),
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        ClientCommand::Cp {
            workflow,
            output_dir,
            node_id,
            template_name,
            artifact_name,
            path,
        } => {
            let ns = o.namespace.as_str();
            let wf = api.json(
                "GET",
                &format!("/api/v1/workflows/{}/{}", enc(ns), enc(&workflow)),
                None,
            )?;
            let mut copied = 0;
            for (id, node) in wf["status"]["nodes"].as_object().into_iter().flatten() {
                let template = node["templateName"].as_str().unwrap_or_default();
                if node_id.as_ref().is_some_and(|n| n != id)
                    || template_name.as_ref().is_some_and(|t| t != template)
                {
                    continue;
                }
                for a in node["outputs"]["artifacts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let name = a["name"].as_str().unwrap_or_default();
                    let Some(key) = a["local"]["key"].as_str().or(a["s3"]["key"].as_str()) else {
                        continue;
                    };
                    if artifact_name.as_ref().is_some_and(|n| n != name) {
                        continue;
                    }
                    // Names from the server are a workflow's (a tenant's) words: each must be
                    // one plain path part, so that nothing lands outside the output directory.
                    for (what, part) in [
                        ("template name", template),
                        ("node id", id.as_str()),
                        ("artifact name", name),
                        (
                            "artifact key's file name",
                            key.rsplit('/').next().unwrap_or(key),
                        ),
                    ] {
                        let plain = !part.is_empty()
                            && part != "."
                            && part != ".."
                            && !part.contains(['/', '\\', '\0']);
                        if !plain {
                            bail!(
                                "workflow {workflow}: the {what} {part:?} cannot be a file name (one path part: no '/', not '.' or '..'); nothing was copied for it"
                            );
                        }
                    }
                    let dir = output_dir.join(
                        path.replacen("{templateName}", template, 1)
                            .replacen("{namespace}", ns, 1)
                            .replacen("{workflowName}", &workflow, 1)
                            .replacen("{nodeId}", id, 1)
                            .replacen("{artifactName}", name, 1),
                    );
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    let file_name = key.rsplit('/').next().unwrap_or(key);
                    if a["archive"]["none"].is_object() {
                        // Maybe a directory saved without an archive: its files, as the
                        // artifact-files listing names them (one file comes back as itself).
                        let base = format!(
                            "/artifact-files/{}/workflows/{}/{}/outputs/{}",
                            enc(ns),
                            enc(&workflow),
                            enc(id),
                            enc(name)
                        );
                        copied += copy_tree(&api, &base, &dir.join(file_name))?;
                        continue;
                    }
                    let target = dir.join(file_name);
                    let r = api.call(
                        "GET",
                        &format!(
                            "/artifacts/{}/{}/{}/{}",
                            enc(ns),
                            enc(&workflow),
                            enc(id),
                            enc(name)
                        ),
                        None,
                    )?;
                    save(r, &target)?;
                    copied += 1;
                }
            }
            if copied == 0 {
                bail!("workflow {workflow} has no output artifacts that match");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::EmergencyStop => {
            let v = api.json("POST", "/api/v1/onyx/emergency-stop", Some(&json!({})))?;
            println!(
                "emergency stop: cordoned {} node(s), suspended {} workflow(s)",
                v["cordoned"].as_array().map_or(0, Vec::len),
                v["suspended"].as_array().map_or(0, Vec::len)
            );
            if v["powerConfigured"] == true {
                println!(
                    "powered off {} node(s) through their BMCs",
                    v["poweredOff"].as_array().map_or(0, Vec::len)
                );
                for e in v["powerErrors"].as_array().cloned().unwrap_or_default() {
                    eprintln!(
                        "power off of {} failed: {}",
                        e["node"].as_str().unwrap_or("?"),
                        e["error"].as_str().unwrap_or_default()
                    );
                }
            } else {
                println!("no [power] command is configured: power the GPU nodes off through their BMCs by hand");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Archive(c) => match c {
            ArchiveCommand::List {
                selector,
                limit,
                output,
            } => {
                let mut q = format!("/api/v1/archived-workflows?namespace={}", enc(ns));
                if let Some(s) = &selector {
                    q += &format!("&listOptions.labelSelector={}", enc(s));
                }
                if limit > 0 {
                    q += &format!("&listOptions.limit={limit}");
                }
                let v = api.json("GET", &q, None)?;
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if output == Format::Wide {
                    let mut rows = vec![vec![
                        "NAME".to_string(),
                        "STATUS".into(),
                        "AGE".into(),
                        "UID".into(),
                    ]];
                    for w in &items {
                        rows.push(vec![
                            w["metadata"]["name"].as_str().unwrap_or_default().into(),
                            w["status"]["phase"].as_str().unwrap_or_default().into(),
                            age(&w["metadata"]["creationTimestamp"]),
                            w["metadata"]["uid"].as_str().unwrap_or_default().into(),
                        ]);
                    }
                    table(&rows);
                } else {
                    list_workflows(&items, output, false)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            ArchiveCommand::Get { uid, output } => {
                print_obj(
                    &api.json(
                        "GET",
                        &format!("/api/v1/archived-workflows/{}", enc(&uid)),
                        None,
                    )?,
                    output,
                )?;
                Ok(ExitCode::SUCCESS)
            }
            ArchiveCommand::Delete { uids } => each(&uids, |u| {
                api.json(
                    "DELETE",
                    &format!("/api/v1/archived-workflows/{}", enc(u)),
                    None,
                )?;
                println!("Archived workflow '{u}' deleted");
                Ok(())
            }),
        },
    }
}

/// `-p`, `-l`, `--generate-name`, `--entrypoint` on a workflow read from a file.
pub fn apply(
    wf: &mut Value,
    params: &[String],
    labels: Option<&str>,
    generate_name: Option<&str>,
    entrypoint: Option<&str>,
) -> anyhow::Result<()> {
    if !params.is_empty() {
        let list = wf["spec"]["arguments"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut list = list;
        for p in params {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow!("-p {p:?}: expected name=value"))?;
            match list.iter_mut().find(|x| x["name"] == k) {
                Some(x) => {
                    x["value"] = json!(v);
                    if let Some(m) = x.as_object_mut() {
                        m.remove("valueFrom");
                    }
                }
                None => list.push(json!({"name": k, "value": v})),
            }
        }
        wf["spec"]["arguments"]["parameters"] = json!(list);
    }
    if let Some(l) = labels.filter(|l| !l.is_empty()) {
        for kv in l.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("-l {kv:?}: expected key=value"))?;
            wf["metadata"]["labels"][k] = json!(v);
        }
    }
    if let Some(g) = generate_name {
        wf["metadata"]["generateName"] = json!(g);
        if let Some(m) = wf["metadata"].as_object_mut() {
            m.remove("name");
        }
    }
    if let Some(e) = entrypoint {
        wf["spec"]["entrypoint"] = json!(e);
    }
    Ok(())
}

fn objects(api: &Api, base: &str, field: &str, c: ObjectCommand) -> anyhow::Result<ExitCode> {
    match c {
        ObjectCommand::Create { files } => {
            for obj in read_objects(&files)? {
                let v = api.json("POST", base, Some(&json!({ field: obj })))?;
                println!(
                    "{} created",
                    v["metadata"]["name"].as_str().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::Lint { files } => {
            let mut ok = true;
            for obj in read_objects(&files)? {
                match api.json(
                    "POST",
                    &format!("{base}/lint"),
                    Some(&json!({ field: obj })),
                ) {
                    Ok(v) => println!(
                        "{}: no linting errors found",
                        v["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                    Err(e) => {
                        ok = false;
                        eprintln!(
                            "{}: {e:#}",
                            obj["metadata"]["name"].as_str().unwrap_or_default()
                        );
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ObjectCommand::List { output } => {
            let v = api.json("GET", base, None)?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&items)?),
                Format::Yaml => print!("{}", print::to_yaml(&json!(items))),
                _ => {
                    let mut rows = vec![vec!["NAME".to_string(), "AGE".into()]];
                    for i in &items {
                        rows.push(vec![
                            i["metadata"]["name"].as_str().unwrap_or_default().into(),
                            age(&i["metadata"]["creationTimestamp"]),
                        ]);
                    }
                    table(&rows);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::Get { name, output } => {
            let v = api.json("GET", &format!("{base}/{}", enc(&name)), None)?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Name => println!("{name}"),
                _ => print!("{}", print::to_yaml(&v)),
            }
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::Delete { names } => each(&names, |n| {
            api.json("DELETE", &format!("{base}/{}", enc(n)), None)?;
            println!("'{n}' deleted");
            Ok(())
        }),
    }
}

#[cfg(test)]
mod local_token_tests {
    use super::is_local;

    #[test]
    fn the_local_token_goes_only_to_this_machine() {
        for local in [
            "http://127.0.0.1:2746",
            "http://localhost:2746/",
            "https://[::1]:2746",
            "127.0.0.2:80",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in [
            "http://10.0.0.1:2746",
            "https://argo.example.com",
            "http://127.0.0.1.evil.example:2746",
            "http://localhost.evil.example",
        ] {
            assert!(!is_local(remote), "{remote}");
        }
    }
}
