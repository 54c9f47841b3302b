//! A throwaway S3-compatible server for tests: moto's server (`pip install 'moto[server]'`),
//! one per caller on a free loopback port, killed when dropped (a test may kill it sooner, to
//! see what a store that goes away does).
//!
//! Without moto, [`Moto::start`] says so: under CI (`CI` set) that fails the test; elsewhere
//! it returns `None` and the test says it was skipped.

#![forbid(unsafe_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Moto {
    pub fn start() -> Option<Moto> {
        let has = Command::new("python3")
            .args(["-c", "import moto.server"])
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            assert!(
                std::env::var_os("CI").is_none(),
                "moto[server] is not installed (.ci/run installs it from PyPI)"
            );
            eprintln!("pip install 'moto[server]' to run this S3 test; skipped");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs moto");
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while ureq::get(&format!("{base}/moto-api/")).call().is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { child, base })
    }

    /// `host:port`, as Argo's `endpoint` field writes it.
    pub fn endpoint(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn make_bucket(&self, bucket: &str) {
        ureq::put(&format!("{}/{bucket}", self.base))
            .call()
            .unwrap_or_else(|e| panic!("making bucket {bucket}: {e}"));
    }

    /// Every key in a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let xml = ureq::get(&format!("{}/{bucket}?list-type=2", self.base))
            .call()
            .unwrap_or_else(|e| panic!("listing {bucket}: {e}"))
            .into_string()
            .unwrap_or_else(|e| panic!("listing {bucket}: {e}"));
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(String::from)
            .collect()
    }

    /// An object's bytes, read with a request signed by `access:secret` (objects are private).
    pub fn object(&self, bucket: &str, key: &str, access: &str, secret: &str) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{access}:{secret}"))
            .arg(format!("{}/{bucket}/{key}", self.base))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "GET {bucket}/{key}: {:?}", out.status);
        out.stdout
    }

    /// Kill it now (the store going away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}
