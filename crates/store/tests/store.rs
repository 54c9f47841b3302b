//! The store against a real SQLite file.

use store::{ArchivedRow, EventRow, ListQuery, NewWorkflow, ObjectRow, Store, StoreError};

fn temp_db(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("onyx-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("onyx.db")
}

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

#[tokio::test]
async fn workflows_events_and_pages_survive_reopening() {
    let path = temp_db("wf");
    {
        let s = Store::open(&path).await.unwrap();
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
        // The same name in another namespace is refused too: pods are named after workflows.
        let mut other = wf(4, "ns2", &[]);
        other.uid = "uid-other".into();
        let clash = s.insert_workflow(other).await;
        assert!(
            matches!(&clash, Err(StoreError::AlreadyExists(m)) if m.contains("\"wf-4\" already exists in namespace \"ns1\"")),
            "{clash:?}"
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
    let s = Store::open(&path).await.unwrap();
    let events = s.events("uid-0001").await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].body, "done");
    let unfinished = s.unfinished_workflows().await.unwrap();
    assert_eq!(unfinished.len(), 24, "one finished, 24 still to run");
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

#[tokio::test]
async fn archive_and_objects() {
    let s = Store::open(&temp_db("arch")).await.unwrap();
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
#[tokio::test]
async fn gpu_usage_ledger() {
    let path = temp_db("usage");
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
        let s = Store::open(&path).await.unwrap();
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
    let s = Store::open(&path).await.unwrap();
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
