//! `onyx cluster`: the seed's findings, the corrected variant, show, schema and bad files.

use std::process::Command;

fn onyx(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("onyx runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_seed_has_its_known_problems_and_the_review_shows_them_as_printed() {
    let (code, text, _) = onyx(&["cluster", "check", "onyx", "--today", "2026-11-29"]);
    assert_eq!(code, 1, "errors exit 1");
    for expected in [
        "ERROR [electrical.node-psu] gpu-r1-01..gpu-r1-08",
        "ERROR [electrical.rack-feed] R1",
        "ERROR [space.chassis-height] gpu-r1-01..gpu-r1-08",
        "ERROR [space.rack-units] R1",
        "ERROR [compat.cpu-socket] gpu-r1-01..gpu-r1-08",
        "ERROR [compat.gpu-form-factor] gpu-r1-01..gpu-r1-08",
        "WARNING [interconnect.nvlink] gpu-r1-01..gpu-r1-08",
        "ERROR [ports.clash] 6443/TCP",
        "ERROR [control-plane.etcd] etcd",
        "ERROR [storage.ceph-pools] archive",
        "ERROR [versions.compatibility] os rocky-9.3 / kernel 5.15",
        "ERROR [scheduling.mig] nvidia.com/gpu-mig-1g.10gb",
        "ERROR [operations.replicas] workflow-controller",
        "WARNING [monitoring.metric-names] dcgm-exporter",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // docs/onyx-cluster-review.md holds exactly this output.
    let review = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/onyx-cluster-review.md"
    ))
    .expect("docs/onyx-cluster-review.md");
    assert!(review.contains(&text), "docs/onyx-cluster-review.md is out of date: paste the output of `onyx cluster check onyx --today 2026-11-29`");
    let (_, json, _) = onyx(&[
        "cluster",
        "check",
        "onyx",
        "-o",
        "json",
        "--today",
        "2026-11-29",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["rule"].is_string() && f["fix"].is_string()));
}

#[test]
fn the_corrected_variant_has_no_error() {
    let (code, text, err) = onyx(&[
        "cluster",
        "check",
        "examples/clusters/onyx-fixed.yaml",
        "--today",
        "2026-11-29",
    ]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.ends_with("0 errors, 2 warnings, 0 info\n"), "{text}");
}

#[test]
fn show_and_schema() {
    let (code, table, _) = onyx(&["cluster", "show", "onyx"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("totals: 20 nodes, 128 GPUs, 10.2 TB GPU memory, 448 MIG instances"),
        "{table}"
    );
    let (_, yaml, _) = onyx(&["cluster", "show", "onyx", "-o", "yaml"]);
    assert!(yaml.starts_with("# The ONYX cluster as the seed specification describes it"));
    let (code, schema, _) = onyx(&["cluster", "schema"]);
    assert_eq!(code, 0);
    let s: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert!(s["properties"]["spec"].is_object(), "{schema}");
}

#[test]
fn bad_cluster_files_name_the_field() {
    let dir = std::env::temp_dir().join(format!("onyx-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.yaml");
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cluster-model/data/onyx.yaml"
    ))
    .unwrap();
    std::fs::write(&f, seed.replace("rack: R2", "rack: R7")).unwrap();
    let (code, _, err) = onyx(&["cluster", "check", f.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("spec.nodes[1].rack: no rack named \"R7\" (racks: R1, R2, R3)"),
        "{err}"
    );
    std::fs::write(&f, seed.replace("capacity: 2kW", "capacity: 2kV")).unwrap();
    let (code, _, err) = onyx(&["cluster", "check", f.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "psus.capacity: expected a power such as 700W or 2kW (units: kW, W), got \"2kV\""
        ),
        "{err}"
    );
    let (code, _, err) = onyx(&["cluster", "check", "nope.yaml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not a file, and not a built-in cluster: onyx"),
        "{err}"
    );
}
