//! `onyx sim ...`: simulators on the scheduler's own code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum SimCommand {
    /// The FGD paper's placement experiment on its trace format: prints the GPU allocation
    /// ratio against arrived GPU demand, then `alloc_at_100=X alloc_at_130=Y
    /// unallocated_gpus_at_130=Z`.
    Placement {
        #[arg(long)]
        nodes: PathBuf,
        #[arg(long)]
        pods: PathBuf,
        /// random, bestfit, dotprod, fgd or onyx.
        #[arg(long, default_value = "onyx")]
        policy: String,
        /// A seed, or a range `42-51` (then the last line is the mean over the seeds).
        #[arg(long, default_value = "42")]
        seed: String,
        /// Arrived GPU demand to simulate, as a multiple of the cluster's GPU capacity.
        #[arg(long, default_value_t = 1.3)]
        tune: f64,
        #[arg(short, long, value_enum, default_value = "text")]
        output: SimFormat,
    },
    /// Replay a job trace (timestamp, duration, num_gpus, cluster columns, as the Philly trace
    /// in ../shared/traces/philly) on a cluster's 8-GPU nodes: wait and completion times and
    /// GPU utilisation under fifo, backfill or fair.
    Jobs {
        #[arg(long)]
        trace: PathBuf,
        /// A cluster file or built-in cluster (onyx): its GPU nodes are the nodes.
        #[arg(long, default_value = "onyx")]
        cluster: String,
        /// fifo, backfill or fair.
        #[arg(long, default_value = "backfill")]
        policy: String,
        #[arg(short, long, value_enum, default_value = "text")]
        output: SimFormat,
    },
    /// Run scheduling scenario files (../shared/design/scenario-format.md): `PASS|FAIL` per
    /// file and `N passed, M failed` last; with `-o json`, what each cycle did.
    Scenario {
        files: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: SimFormat,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum SimFormat {
    Text,
    Json,
}

fn seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seed {text:?}: expected a number or a range like 42-51");
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a > b {
                return Err(bad());
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![text.parse().map_err(|_| bad())?]),
    }
}

fn scenarios(files: &[PathBuf], output: SimFormat) -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    let mut all = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let result = std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| scheduler::load(&t))
            .and_then(|s| {
                scheduler::run(&s)
                    .map(|o| (s, o))
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok((s, out)) => {
                let verdict = match &s.expect {
                    Some(e) => scheduler::compare(e, &out),
                    None => Ok(()),
                };
                if output == SimFormat::Json {
                    all.push(
                        serde_json::json!({"file": name, "outcome": out, "pass": verdict.is_ok()}),
                    );
                }
                match verdict {
                    Ok(()) => {
                        passed += 1;
                        if output == SimFormat::Text {
                            println!("PASS {name}");
                        }
                    }
                    Err(d) => {
                        failed += 1;
                        if output == SimFormat::Text {
                            println!("FAIL {name}: {d}");
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                if output == SimFormat::Text {
                    println!("FAIL {name}: {e}");
                } else {
                    all.push(serde_json::json!({"file": name, "error": e, "pass": false}));
                }
            }
        }
    }
    if output == SimFormat::Json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn jobs(trace: &std::path::Path, cluster: &str, policy: &str, output: SimFormat) -> ExitCode {
    let policy: sim::jobs::QueuePolicy = match policy.parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("onyx sim jobs: {e}");
            return ExitCode::from(2);
        }
    };
    let cat = cluster_model::Catalogue::builtin();
    let text = match cluster_model::builtin(cluster) {
        Some(t) => t.to_string(),
        None => match std::fs::read_to_string(cluster) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("onyx sim jobs: --cluster {cluster}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let c = match cluster_model::load(cluster, &text, &cat) {
        Ok(c) => c,
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    let gpus: u32 = c
        .nodes
        .iter()
        .filter_map(|n| c.group(n).gpus.as_ref().map(|g| g.count))
        .sum();
    let nodes = (gpus / 8) as usize;
    if nodes == 0 {
        eprintln!("onyx sim jobs: the cluster {cluster} has no GPU nodes");
        return ExitCode::from(2);
    }
    let jobs = match sim::jobs::load_jobs(trace) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("onyx sim jobs: {e}");
            return ExitCode::from(2);
        }
    };
    let r = sim::jobs::run_jobs(&jobs, nodes, policy);
    if output == SimFormat::Json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        let h = |s: f64| format!("{:.1}h", s / 3600.0);
        println!(
            "cluster={cluster} nodes={nodes} gpus={} jobs={} refused={}",
            nodes * 8,
            r.jobs,
            r.refused
        );
        println!(
            "policy={} wait_mean={} wait_p50={} wait_p99={} jct_mean={} jct_p50={} jct_p99={} gpu_utilisation={:.1}%",
            r.policy, h(r.wait_mean_s), h(r.wait_p50_s), h(r.wait_p99_s), h(r.jct_mean_s), h(r.jct_p50_s), h(r.jct_p99_s), r.gpu_utilisation * 100.0
        );
    }
    ExitCode::SUCCESS
}

pub fn run(cmd: SimCommand) -> ExitCode {
    match cmd {
        SimCommand::Jobs {
            trace,
            cluster,
            policy,
            output,
        } => jobs(&trace, &cluster, &policy, output),
        SimCommand::Scenario { files, output } => scenarios(&files, output),
        SimCommand::Placement {
            nodes,
            pods,
            policy,
            seed,
            tune,
            output,
        } => {
            let policy: placement::Policy = match policy.parse() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("onyx sim placement: {e}");
                    return ExitCode::from(2);
                }
            };
            let seeds = match seeds(&seed) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("onyx sim placement: {e}");
                    return ExitCode::from(2);
                }
            };
            if !(tune > 0.0 && tune <= 10.0) {
                eprintln!(
                    "onyx sim placement: --tune {tune}: expected a multiple of capacity in (0, 10]"
                );
                return ExitCode::from(2);
            }
            let trace = match sim::load_trace(&nodes, &pods) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("onyx sim placement: {e}");
                    return ExitCode::from(2);
                }
            };
            let reports: Vec<sim::PlacementReport> = seeds
                .iter()
                .map(|s| sim::run_placement(&trace, policy, *s, tune))
                .collect();
            let n = reports.len() as f64;
            let mean =
                |f: &dyn Fn(&sim::PlacementReport) -> f64| reports.iter().map(f).sum::<f64>() / n;
            let (a100, a130, un) = (
                mean(&|r| r.alloc_at_100),
                mean(&|r| r.alloc_at_130),
                mean(&|r| r.unallocated_gpus_at_130),
            );
            if output == SimFormat::Json {
                println!(
                    "{}",
                    serde_json::json!({"runs": reports, "mean": {"alloc_at_100": a100, "alloc_at_130": a130, "unallocated_gpus_at_130": un}})
                );
                return ExitCode::SUCCESS;
            }
            if reports.len() == 1 {
                println!("arrived_pct alloc_pct");
                for (p, a) in reports[0].curve.iter().filter(|(p, _)| p % 5 == 0) {
                    println!("{p:>11} {a:>9.3}");
                }
            } else {
                for r in &reports {
                    println!(
                        "seed={} alloc_at_100={:.3} alloc_at_130={:.3} unallocated_gpus_at_130={:.1} decisions/s={:.0}",
                        r.seed, r.alloc_at_100, r.alloc_at_130, r.unallocated_gpus_at_130,
                        r.pods_arrived as f64 / r.decide_seconds.max(1e-9)
                    );
                }
            }
            println!(
                "alloc_at_100={a100:.3} alloc_at_130={a130:.3} unallocated_gpus_at_130={un:.1}"
            );
            ExitCode::SUCCESS
        }
    }
}
