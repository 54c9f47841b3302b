//! A throwaway PostgreSQL for tests, from the binaries Debian's `postgresql` installs.
//!
//! The first caller in a test process starts one server (in a temporary directory, on a free
//! loopback port, `fsync` off); every caller gets a database of its own on it. The server
//! dies with the test process (parent-death signal), and directories left by earlier test
//! processes are removed when the next one starts.
//!
//! `ONYX_TEST_POSTGRES_URL` (a server's URL with a user that may create databases) uses that
//! server instead. Without either, callers get an error saying what to install.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use test_process::{free_port, remove_stale, spawn_tied};

/// A running server: where to reach it, and how to run its client.
pub struct Server {
    /// `postgres://USER@HOST:PORT`, without a database.
    pub base_url: String,
    /// The port the server listens on (loopback).
    pub port: u16,
    /// The postmaster's process id, when this process started it (to kill it in a test).
    pub pid: Option<u32>,
    psql: PathBuf,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The process's server, started on first use.
pub fn server() -> Result<&'static Server, String> {
    SERVER
        .get_or_init(|| match std::env::var("ONYX_TEST_POSTGRES_URL") {
            Ok(url) => external(&url),
            Err(_) => start(),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A new, empty database on the process's server: its URL.
pub fn database(hint: &str) -> Result<String, String> {
    let server = server()?;
    let tag: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let name = format!(
        "t_{}_{}_{}",
        tag,
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    server.psql(&format!("CREATE DATABASE {name}"))?;
    Ok(format!("{}/{name}", server.base_url))
}

impl Server {
    /// Run one SQL command as the server's superuser (against the `postgres` database).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in(&format!("{}/postgres", self.base_url), sql)
    }

    /// Run one SQL command in the database at `url`; its rows, `|`-separated, one a line.
    pub fn psql_in(&self, url: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(&self.psql)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(url)
            .args(["-c", sql])
            .output()
            .map_err(|e| format!("running {}: {e}", self.psql.display()))?;
        if !out.status.success() {
            return Err(format!(
                "psql -c {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

fn external(url: &str) -> Result<Server, String> {
    let base = url.trim_end_matches('/');
    let port = base
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    Ok(Server {
        base_url: base.to_string(),
        port,
        pid: None,
        psql: bin_dir()
            .map(|d| d.join("psql"))
            .unwrap_or_else(|_| "psql".into()),
    })
}

/// Where `initdb` and `postgres` are: Debian keeps them out of PATH, under
/// /usr/lib/postgresql/VERSION/bin (the newest installed version is used).
fn bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .ok_or_else(|| {
            "PostgreSQL is not installed: no initdb under /usr/lib/postgresql/*/bin or on PATH \
             (install Debian's `postgresql`, as .ci/run does, or set ONYX_TEST_POSTGRES_URL)"
                .to_string()
        })
}

/// The user the server runs as: PostgreSQL refuses to run as root.
fn account() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    ["postgres", "nobody"].iter().find_map(|want| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == *want)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
    })
}

fn start() -> Result<Server, String> {
    let bin = bin_dir()?;
    let tmp = std::env::temp_dir();
    remove_stale(&tmp, "onyx-pg-");
    let dir = tmp.join(format!("onyx-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let owner = account();
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into()))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let as_owner = |cmd: &mut Command| {
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
    };
    let data = dir.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "onyx",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdout(Stdio::null());
    as_owner(&mut initdb);
    let out = initdb
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        let _ = nix::unistd::chown(
            &dir.join("postgres.log"),
            Some(uid.into()),
            Some(gid.into()),
        );
    }
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=300"])
        .stdout(Stdio::null())
        .stderr(log);
    as_owner(&mut postgres);
    // The server dies with this process.
    let pid = spawn_tied(postgres, "postgres")?;
    let server = Server {
        base_url: format!("postgres://onyx@127.0.0.1:{port}"),
        port,
        pid: Some(pid),
        psql: bin.join("psql"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match server.psql("SELECT 1") {
            Ok(_) => return Ok(server),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
                return Err(format!("PostgreSQL did not start in 60 s: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
