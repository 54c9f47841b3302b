use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// Run `f` on a thread with a 2 MiB stack — a tokio worker's, where the server runs these
/// parsers — so that recursion too deep for the server is a crash here too, not hidden by
/// the fuzzer's 8 MiB main stack. One thread serves every input (spawning one per input
/// costs more than most inputs); a panic there aborts the process, as libfuzzer-sys's panic
/// hook does on the main thread, and the input is reported as a crash.
pub fn on_server_stack(f: impl FnOnce() + Send + 'static) {
    static WORKER: OnceLock<Mutex<Sender<(Job, Sender<()>)>>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (tx, rx) = channel::<(Job, Sender<()>)>();
        std::thread::Builder::new()
            .name("server-stack".into())
            .stack_size(2 << 20)
            .spawn(move || {
                for (job, done) in rx {
                    job();
                    let _ = done.send(());
                }
            })
            .expect("spawn");
        Mutex::new(tx)
    });
    let (done, wait) = channel();
    worker
        .lock()
        .expect("worker")
        .send((Box::new(f), done))
        .expect("worker alive");
    wait.recv().expect("the worker finished the input");
}

/// A short input (16 bytes at most) repeated to about the longest input (4 KiB): `[`, `- `
/// or `{a: ` becomes a document thousands of levels deep, `!` or `(` an expression as deep,
/// `a=1,` a selector of a thousand terms. Byte mutations rarely build such depth (it adds no
/// coverage on the way), and unbounded recursion is what these parsers' untrusted input
/// most often breaks.
pub fn amplified(text: &str) -> Option<String> {
    (1..=16)
        .contains(&text.len())
        .then(|| text.repeat(4096 / text.len()))
}
