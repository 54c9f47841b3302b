//! The store against a real SQLite file and a real PostgreSQL (started by `test-postgres`):
//! every test runs on both, with the same assertions.

use store::{
    ArchivedRow, EventRow, ListQuery, Location, NewWorkflow, ObjectRow, Store, StoreError,
};

fn sqlite(tag: &str) -> Location {
    let dir = std::env::temp_dir().join(format!("onyx-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Location::Sqlite(dir.join("onyx.db"))
}

fn postgres(tag: &str) -> Location {
    Location::Postgres(test_postgres::database(tag).unwrap_or_else(|e| panic!("{e}")))
}

async fn open(at: &Location) -> Store {
    Store::connect(at).await.unwrap()
}

/// One test on each database.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::sqlite(stringify!($name))).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::postgres(stringify!($name))).await
            })*
        }
    };
}

on_both!(
    workflows_events_and_pages_survive_reopening,
    archive_and_objects,
    gpu_usage_ledger,
    notifications_and_artifacts,
    a_lease_fences_a_deposed_holder,
    a_selector_of_thousands_of_terms,
    label_selectors_select_what_they_match,
);

fn wf(i: i64, ns: &str, labels: &[(&str, &str)]) -> NewWorkflow {
    NewWorkflow {
        uid: format!("uid-{i:04}"),
        namespace: ns.into(),
        name: format!("wf-{i}"),
        created_ns: 1_000 + i,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        manifest: "{}".into(),
        params: "[]".into(),
        context: "{}".into(),
        status: format!("{{\"n\":{i}}}"),
    }
}

async fn workflows_events_and_pages_survive_reopening(at: Location) {
    {
        let s = open(&at).await;
        for i in 0..25 {
            let labels: &[(&str, &str)] = if i % 2 == 0 {
                &[("team", "a")]
            } else {
                &[("team", "b")]
            };
            s.insert_workflow(wf(i, "ns1", labels)).await.unwrap();
        }
        let dup = s.insert_workflow(wf(3, "ns1", &[])).await;
        assert!(
            matches!(dup, Err(StoreError::AlreadyExists(m)) if m == "workflows.argoproj.io \"wf-3\" already exists")
        );
        // The same name in another namespace is another workflow.
        let mut other = wf(4, "ns2", &[]);
        other.uid = "uid-other".into();
        s.insert_workflow(other).await.unwrap();
        assert_eq!(
            s.workflow("ns2", "wf-4").await.unwrap().unwrap().uid,
            "uid-other"
        );
        s.append_events(
            "uid-0001",
            vec![
                EventRow {
                    seq: 0,
                    at_ns: 5,
                    body: "start".into(),
                },
                EventRow {
                    seq: 1,
                    at_ns: 7,
                    body: "done".into(),
                },
            ],
        )
        .await
        .unwrap();
        s.update_status("uid-0001", "Succeeded", Some(9), "{\"done\":true}".into())
            .await
            .unwrap();
    }
    let s = open(&at).await;
    // An append tried again (its first answer lost) adds nothing twice.
    s.append_events(
        "uid-0001",
        vec![EventRow {
            seq: 1,
            at_ns: 7,
            body: "done".into(),
        }],
    )
    .await
    .unwrap();
    let events = s.events("uid-0001").await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].body, "done");
    let unfinished = s.unfinished_workflows().await.unwrap();
    assert_eq!(unfinished.len(), 25, "one finished, 25 still to run");
    // Pages of 10, newest first, filtered by label.
    let mut q = ListQuery {
        namespace: Some("ns1".into()),
        selector: "team=a".parse().unwrap(),
        limit: 5,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = s.list_workflows(&q).await.unwrap();
        seen.extend(page.items);
        match page.next {
            Some(t) => q.continue_token = Some(t),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25)
        .rev()
        .filter(|i| i % 2 == 0)
        .map(|i| format!("{{\"n\":{i}}}"))
        .collect();
    assert_eq!(seen, expected);
    q.continue_token = Some("garbage".into());
    assert!(matches!(
        s.list_workflows(&q).await,
        Err(StoreError::BadContinue)
    ));
    s.delete_workflow("uid-0001").await.unwrap();
    assert!(s.events("uid-0001").await.unwrap().is_empty());
    assert!(matches!(
        s.delete_workflow("uid-0001").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn archive_and_objects(at: Location) {
    let s = open(&at).await;
    for i in 0..3 {
        s.archive(ArchivedRow {
            uid: format!("a{i}"),
            namespace: "ns".into(),
            name: format!("w{i}"),
            phase: "Succeeded".into(),
            created_ns: i,
            finished_ns: Some(i + 1),
            labels: vec![("k".into(), format!("v{i}"))],
            body: format!("{i}"),
        })
        .await
        .unwrap();
    }
    let q = ListQuery {
        selector: "k in (v0, v2)".parse().unwrap(),
        ..Default::default()
    };
    assert_eq!(s.list_archived(&q).await.unwrap().items, vec!["2", "0"]);
    assert_eq!(
        s.archived("a1").await.unwrap().unwrap().labels,
        vec![("k".into(), "v1".into())]
    );
    s.delete_archived("a1").await.unwrap();
    assert!(s.archived("a1").await.unwrap().is_none());

    let row = ObjectRow {
        kind: "WorkflowTemplate".into(),
        namespace: "ns".into(),
        name: "t".into(),
        created_ns: 1,
        body: "{}".into(),
    };
    s.put_object(row.clone(), true).await.unwrap();
    let again = s.put_object(row.clone(), true).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(m)) if m == "workflowtemplates.argoproj.io \"t\" already exists")
    );
    let mut missing = row.clone();
    missing.name = "nope".into();
    assert!(matches!(
        s.put_object(missing, false).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.objects("WorkflowTemplate", Some("ns"))
            .await
            .unwrap()
            .len(),
        1
    );
    s.delete_object("WorkflowTemplate", "ns", "t")
        .await
        .unwrap();
    assert!(s
        .object("WorkflowTemplate", "ns", "t")
        .await
        .unwrap()
        .is_none());
}

/// The GPU ledger: a hold opens at its grant and closes at its release; a second grant of a
/// pod that still holds (re-adopted after a restart) keeps the first; on start, holds of pods
/// that no longer hold anything close; a query returns every hold overlapping its window.
async fn gpu_usage_ledger(at: Location) {
    let hold = |pod: &str, ns: &str, gpus: f64, at: i64| store::UsageRow {
        pod: pod.into(),
        namespace: ns.into(),
        queue: "default".into(),
        node: "n1".into(),
        gpus,
        cpus: 2.0,
        devices: vec!["0".into(), "1/3".into()],
        asked_ns: at - 10,
        started_ns: at,
        ended_ns: None,
    };
    {
        let s = open(&at).await;
        s.usage_started(hold("a", "vision", 8.0, 100))
            .await
            .unwrap();
        s.usage_started(hold("a", "vision", 8.0, 150))
            .await
            .unwrap();
        s.usage_started(hold("b", "nlp", 1.0 / 7.0, 200))
            .await
            .unwrap();
        s.usage_started(hold("c", "nlp", 0.5, 300)).await.unwrap();
        s.usage_ended("a", 400).await.unwrap();
        s.usage_ended("a", 500).await.unwrap();
        let all = s.usage(0, 1000).await.unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!((all[0].started_ns, all[0].ended_ns), (100, Some(400)));
    }
    // Restarted: c still runs, b ended while the server was down.
    let s = open(&at).await;
    s.usage_close_all_but(vec!["c".into()], 900).await.unwrap();
    let all = s.usage(0, 1000).await.unwrap();
    let ended: Vec<(&str, Option<i64>)> =
        all.iter().map(|u| (u.pod.as_str(), u.ended_ns)).collect();
    assert_eq!(ended, [("a", Some(400)), ("b", Some(900)), ("c", None)]);
    assert_eq!(all[1].gpus, 1.0 / 7.0);
    assert_eq!(all[1].asked_ns, 190, "the wait is kept");
    assert_eq!(all[1].devices, ["0", "1/3"]);
    assert_eq!(all[1].cpus, 2.0);
    let a = s.usage_of_pod("a").await.unwrap();
    assert_eq!((a.len(), a[0].ended_ns), (1, Some(400)));
    // Windows: only holds that overlap.
    let pods = |v: Vec<store::UsageRow>| v.into_iter().map(|u| u.pod).collect::<Vec<_>>();
    assert_eq!(pods(s.usage(0, 100).await.unwrap()), Vec::<String>::new());
    assert_eq!(pods(s.usage(400, 901).await.unwrap()), ["b", "c"]);
    assert_eq!(pods(s.usage(2000, 3000).await.unwrap()), ["c"]);
}

/// The outbox, the artifact ledger, counts by phase, and the statements that upsert (an
/// archive written twice, a retry's reset): the parts whose SQL differs most between
/// databases.
async fn notifications_and_artifacts(at: Location) {
    let s = open(&at).await;
    let note = |key: &str, at: i64| store::NewNotification {
        key: key.into(),
        webhook: "ops".into(),
        body: format!("{{\"k\":\"{key}\"}}"),
        created_ns: at,
    };
    s.notify(vec![
        note("w1/ops/Succeeded", 10),
        note("w2/ops/Failed", 20),
    ])
    .await
    .unwrap();
    // A replay enqueues the same key again: nothing twice.
    s.notify(vec![note("w1/ops/Succeeded", 30)]).await.unwrap();
    assert_eq!(s.pending_notifications().await.unwrap(), 2);
    let due = s.due_notifications(15, 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (due[0].key.as_str(), due[0].attempts),
        ("w1/ops/Succeeded", 0)
    );
    s.notification_failed(due[0].id, 100, "503".into())
        .await
        .unwrap();
    let due = s.due_notifications(50, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|n| n.key.as_str()).collect::<Vec<_>>(),
        ["w2/ops/Failed"],
        "the failed one waits for its retry time"
    );
    s.notification_sent(due[0].id, 60).await.unwrap();
    let due = s.due_notifications(200, 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    assert_eq!(s.pending_notifications().await.unwrap(), 1);

    let art = |key: &str, bytes: i64, at: i64| store::ArtifactRow {
        uid: "u1".into(),
        key: key.into(),
        namespace: "ns".into(),
        workflow: "w1".into(),
        bytes,
        stored_ns: at,
    };
    s.artifacts_stored(vec![art("a/out.tgz", 1 << 40, 5), art("a/log", 7, 9)])
        .await
        .unwrap();
    s.artifacts_stored(vec![art("a/out.tgz", 1, 5)])
        .await
        .unwrap();
    let stored = s.artifacts_before(100).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].bytes, 1 << 40, "the first record stands");
    assert_eq!(s.artifacts_before(6).await.unwrap().len(), 1);

    for i in 0..3 {
        s.insert_workflow(wf(i, if i == 0 { "a" } else { "b" }, &[("k", "v")]))
            .await
            .unwrap();
    }
    s.update_status("uid-0002", "Running", None, "{}".into())
        .await
        .unwrap();
    assert_eq!(
        s.count_by_phase().await.unwrap(),
        [
            ("a".to_string(), "Pending".to_string(), 1),
            ("b".into(), "Pending".into(), 1),
            ("b".into(), "Running".into(), 1)
        ]
    );
    s.update_status("uid-0001", "Failed", Some(50), "{}".into())
        .await
        .unwrap();
    s.append_events(
        "uid-0001",
        vec![EventRow {
            seq: 0,
            at_ns: 1,
            body: "e".into(),
        }],
    )
    .await
    .unwrap();
    s.reset_workflow("uid-0001", "{\"retried\":1}".into(), "{}".into())
        .await
        .unwrap();
    assert!(s.events("uid-0001").await.unwrap().is_empty());
    let row = s.workflow("b", "wf-1").await.unwrap().unwrap();
    assert_eq!((row.phase.as_str(), row.finished_ns), ("Running", None));
    assert_eq!(row.manifest, "{\"retried\":1}");
    assert_eq!(s.unfinished_workflows().await.unwrap().len(), 3);

    let archived = |phase: &str, labels: Vec<(String, String)>| ArchivedRow {
        uid: "x".into(),
        namespace: "ns".into(),
        name: "x".into(),
        phase: phase.into(),
        created_ns: 1,
        finished_ns: Some(2),
        labels,
        body: phase.into(),
    };
    s.archive(archived("Failed", vec![("a".into(), "1".into())]))
        .await
        .unwrap();
    s.archive(archived("Succeeded", vec![("b".into(), "2".into())]))
        .await
        .unwrap();
    let row = s.archived("x").await.unwrap().unwrap();
    assert_eq!(
        (row.phase.as_str(), row.body.as_str()),
        ("Succeeded", "Succeeded")
    );
    assert_eq!(row.labels, vec![("b".to_string(), "2".to_string())]);
}

/// Hot standby's ground rules: one holder at a time; a lease let expire is taken over with the
/// next token; the deposed holder's writes are refused whole (`Fenced`), its renewal fails,
/// and what it tried to write is not there.
async fn a_lease_fences_a_deposed_holder(at: Location) {
    let leader = open(&at).await;
    let standby = open(&at).await;
    let ttl = 1_000;
    let first = leader
        .acquire_lease("controller", "a", "http://a", 0, ttl)
        .await
        .unwrap();
    assert_eq!(first, Some(1));
    leader.fence("controller", 1);
    assert_eq!(
        standby
            .acquire_lease("controller", "b", "http://b", 500, 500 + ttl)
            .await
            .unwrap(),
        None,
        "held and not expired"
    );
    assert!(leader
        .renew_lease("controller", "a", 1, 1_500 + ttl)
        .await
        .unwrap());
    leader.insert_workflow(wf(1, "ns", &[])).await.unwrap();
    let lease = standby.lease("controller").await.unwrap().unwrap();
    assert_eq!(
        (lease.holder.as_str(), lease.address.as_str(), lease.token),
        ("a", "http://a", 1)
    );
    // The leader stops renewing; once its lease expires the standby takes it.
    assert_eq!(
        standby
            .acquire_lease("controller", "b", "http://b", 3_000, 3_000 + ttl)
            .await
            .unwrap(),
        Some(2)
    );
    standby.fence("controller", 2);
    let stale = leader.insert_workflow(wf(2, "ns", &[])).await;
    assert!(
        matches!(&stale, Err(StoreError::Fenced { token: 1, .. })),
        "{stale:?}"
    );
    assert!(!leader
        .renew_lease("controller", "a", 1, 9_000)
        .await
        .unwrap());
    assert!(standby.workflow("ns", "wf-2").await.unwrap().is_none());
    standby.insert_workflow(wf(3, "ns", &[])).await.unwrap();
    assert_eq!(standby.unfinished_workflows().await.unwrap().len(), 2);
}

/// `listOptions.labelSelector` with 3,000 terms (`a0=1,a1=1,…`) once answered HTTP 500: each
/// term was one `AND EXISTS (…)`, SQLite refused the chain ("Expression tree is too large
/// (maximum depth 1000)") and PostgreSQL spent minutes planning 3,000 semi-joins.
async fn a_selector_of_thousands_of_terms(at: Location) {
    let started = std::time::Instant::now();
    let s = open(&at).await;
    let all: Vec<(String, String)> = (0..3000).map(|i| (format!("a{i}"), "1".into())).collect();
    let mut w = wf(1, "ns1", &[]);
    w.labels = all.clone();
    s.insert_workflow(w).await.unwrap();
    let mut other = wf(2, "ns1", &[]);
    other.labels = all[..2999].to_vec();
    s.insert_workflow(other).await.unwrap();
    let text = all
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let q = ListQuery {
        namespace: Some("ns1".into()),
        selector: text.parse().unwrap(),
        ..Default::default()
    };
    let page = s.list_workflows(&q).await.unwrap();
    assert_eq!(page.items, vec!["{\"n\":1}".to_string()]);
    // Mixed forms, with sets, negations and existence tests.
    let text = (0..3000)
        .map(|i| match i % 4 {
            0 => format!("a{i} in (0, 1)"),
            1 => format!("!b{i}"),
            2 => format!("a{i} notin (2)"),
            _ => format!("a{i}"), // a2999: the one label workflow 2 lacks
        })
        .collect::<Vec<_>>()
        .join(",");
    let q = ListQuery {
        selector: text.parse().unwrap(),
        ..q
    };
    let page = s.list_workflows(&q).await.unwrap();
    assert_eq!(page.items, vec!["{\"n\":1}".to_string()]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// The SQL a selector becomes selects exactly the workflows `Selector::matches` accepts:
/// random label sets against random selectors, several requirements on one key included.
async fn label_selectors_select_what_they_match(at: Location) {
    let s = open(&at).await;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (keys, values) = (["a", "b", "c"], ["1", "2", "3"]);
    let mut labels = Vec::new();
    for i in 0..40 {
        let mut l: Vec<(String, String)> = Vec::new();
        for k in keys {
            if rnd(3) > 0 {
                l.push((k.into(), values[rnd(3) as usize].into()));
            }
        }
        let mut w = wf(i, "ns1", &[]);
        w.labels = l.clone();
        s.insert_workflow(w).await.unwrap();
        labels.push(l);
    }
    for _ in 0..300 {
        let terms: Vec<String> = (0..1 + rnd(4))
            .map(|_| {
                let k = keys[rnd(3) as usize];
                let n = 1 + rnd(2);
                let set = (0..n)
                    .map(|_| values[rnd(3) as usize])
                    .collect::<Vec<_>>()
                    .join(",");
                match rnd(6) {
                    0 => format!("{k}={}", values[rnd(3) as usize]),
                    1 => format!("{k}!={}", values[rnd(3) as usize]),
                    2 => k.to_string(),
                    3 => format!("!{k}"),
                    4 => format!("{k} in ({set})"),
                    _ => format!("{k} notin ({set})"),
                }
            })
            .collect();
        let text = terms.join(",");
        let selector: store::Selector = text.parse().unwrap();
        let want: Vec<String> = (0..40)
            .rev()
            .filter(|i| {
                selector.matches(|k| {
                    labels[*i as usize]
                        .iter()
                        .find(|(lk, _)| lk == k)
                        .map(|(_, v)| v.clone())
                })
            })
            .map(|i| format!("{{\"n\":{i}}}"))
            .collect();
        let q = ListQuery {
            selector,
            ..Default::default()
        };
        assert_eq!(s.list_workflows(&q).await.unwrap().items, want, "{text}");
    }
}
