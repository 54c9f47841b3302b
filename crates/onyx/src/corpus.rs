//! What the two conformance tables share: the options of a run and the parallel runner.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Options {
    pub jobs: usize,
    pub timeout: Duration,
    pub home: PathBuf,
    pub only: Option<String>,
    /// Also write the results as a Markdown table to this file.
    pub report: Option<PathBuf>,
    /// `test/e2e` of an Argo v3.5.6 checkout: also run the e2e table (`crate::e2e`).
    pub e2e: Option<PathBuf>,
    /// Another e2e table instead of the committed one.
    pub e2e_table: Option<PathBuf>,
}

/// Run `job` over `items` on `jobs` threads, in the items' order of start.
pub fn parallel<T: Send + 'static, R: Send + 'static>(
    items: Vec<T>,
    jobs: usize,
    job: impl Fn(T) -> R + Send + Sync + 'static,
) -> Vec<R> {
    let queue: Arc<Mutex<Vec<T>>> = Arc::new(Mutex::new(items.into_iter().rev().collect()));
    let results: Arc<Mutex<Vec<R>>> = Arc::new(Mutex::new(Vec::new()));
    let job = Arc::new(job);
    let handles: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let (queue, results, job) = (queue.clone(), results.clone(), job.clone());
            std::thread::spawn(move || loop {
                let Some(item) = queue.lock().expect("queue").pop() else {
                    break;
                };
                let r = job(item);
                results.lock().expect("results").push(r);
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let mut out = results.lock().expect("results");
    std::mem::take(&mut *out)
}
