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
