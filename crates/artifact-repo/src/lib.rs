//! Where artifacts are kept: ONYX's local directory (the embedded default) or an S3 bucket —
//! Argo's `s3` artifact repository (Ceph RGW's S3 API in the spec; MinIO or AWS alike) —
//! through `object_store`.
//!
//! Keys are Argo's (`{workflow}/{pod}/{artifact}.tgz` by default). An artifact is one object;
//! a directory saved without an archive (`archive: none`) is one object per file under the
//! key as a prefix, as Argo's executor stores it.
//!
//! Every S3 call has a connect timeout, a request timeout and a bounded number of retries,
//! so a store that goes away fails the call with its error rather than hanging the step.

#![forbid(unsafe_code)]

pub mod archive;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Store {
        what: String,
        source: object_store::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// An S3 repository as Argo's `s3` artifact repository names its fields. Credentials are
/// files (or the secrets they come from, resolved before this): never in a pod's spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `host:port` as Argo writes it, or a URL.
    pub endpoint: String,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Plain HTTP (Argo's `insecure: true`).
    #[serde(default)]
    pub insecure: bool,
    /// Files holding the access key id and the secret access key.
    #[serde(default)]
    pub access_key_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// Seconds a request may take before it fails (then it is retried, at most `retries` times).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Every key is under this prefix (`NAMESPACE`: a tenant's keys, set by
    /// [`Repository::for_namespace`]); none by default.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// The credentials read from the files (`read_credentials`): kept in memory only, for a
    /// process that cannot reach the files later (a pod wrapper in its own root).
    #[serde(skip)]
    credentials: Option<(String, String)>,
    /// The client, once made (`connect`).
    #[serde(skip)]
    client: Option<Arc<dyn ObjectStore>>,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> usize {
    2
}

impl S3Config {
    /// The URL of an object, as logs and messages show it.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn endpoint_url(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else if self.insecure {
            format!("http://{}", self.endpoint)
        } else {
            format!("https://{}", self.endpoint)
        }
    }

    fn secret(path: &Option<PathBuf>, what: &str) -> Result<Option<String>, RepoError> {
        let Some(p) = path else { return Ok(None) };
        std::fs::read_to_string(p)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|source| RepoError::Io {
                what: format!("the S3 {what} file {}", p.display()),
                source,
            })
    }

    /// A bucket named by an artifact's own `s3` fields (Argo's `endpoint`, `bucket`, `region`,
    /// `insecure`), with credentials given in memory (resolved from the namespace's secrets).
    pub fn for_artifact(
        endpoint: &str,
        bucket: &str,
        region: Option<&str>,
        insecure: bool,
        credentials: Option<(String, String)>,
    ) -> S3Config {
        S3Config {
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
            region: region.map_or_else(default_region, String::from),
            insecure,
            access_key_file: None,
            secret_key_file: None,
            timeout_seconds: default_timeout(),
            retries: default_retries(),
            key_prefix: None,
            credentials,
            client: None,
        }
    }

    /// Read the credential files and make the client now, for a process that cannot later
    /// (a pod wrapper entering a root of its own sees neither the files nor the system's
    /// certificates).
    pub fn connect(&mut self) -> Result<(), RepoError> {
        if let (Some(id), Some(key)) = (
            Self::secret(&self.access_key_file, "access key")?,
            Self::secret(&self.secret_key_file, "secret key")?,
        ) {
            self.credentials = Some((id, key));
        }
        self.client = Some(self.store()?);
        Ok(())
    }

    fn store(&self) -> Result<Arc<dyn ObjectStore>, RepoError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        // Client options first: they replace the whole set, `allow_http` included.
        let mut b = AmazonS3Builder::new()
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(self.timeout_seconds.max(1))),
            )
            .with_endpoint(self.endpoint_url())
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_allow_http(self.endpoint_url().starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: self.retries,
                retry_timeout: Duration::from_secs(self.timeout_seconds.max(1) * 2),
                ..Default::default()
            });
        let (id, key) = match &self.credentials {
            Some((id, key)) => (Some(id.clone()), Some(key.clone())),
            None => (
                Self::secret(&self.access_key_file, "access key")?,
                Self::secret(&self.secret_key_file, "secret key")?,
            ),
        };
        match (id, key) {
            (Some(id), Some(key)) => {
                b = b.with_access_key_id(id).with_secret_access_key(key);
            }
            (None, None) => b = b.with_skip_signature(true),
            _ => {
                return Err(RepoError::Config(
                    "S3: give both access_key_file and secret_key_file, or neither".into(),
                ))
            }
        }
        b.build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            .map_err(|source| RepoError::Store {
                what: format!("S3 repository {}", self.url("")),
                source,
            })
    }
}

/// A repository to put artifacts in and get them from.
// The S3 variant is the larger one; repositories are made once per workflow or pod, never in
// a hot loop, and boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Repository {
    /// A directory: an artifact is the file (or directory) at `DIR/KEY`.
    Local(PathBuf),
    S3(S3Config),
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> RepoError {
    move |source| RepoError::Io { what, source }
}

/// Check a key as a repository takes it: relative and `/`-separated, with no empty, `.` or
/// `..` part, no `\\` and no NUL (one trailing `/` is allowed), so that no key names a place
/// outside its repository, on disk or under a tenant's prefix.
pub fn check_key(key: &str) -> Result<(), RepoError> {
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    let bad = trimmed.is_empty()
        || trimmed.starts_with('/')
        || trimmed.contains('\\')
        || trimmed.contains('\0')
        || trimmed
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(RepoError::Config(format!(
            "artifact key {key:?} is not a relative key: keys are relative, '/'-separated, with no empty, '.' or '..' part"
        )));
    }
    Ok(())
}

impl Repository {
    /// The part of this repository that belongs to `namespace`: its keys are under
    /// `DIR/NAMESPACE` (local) or `NAMESPACE/` (S3), so one tenant never reads, overwrites or
    /// removes another's.
    pub fn for_namespace(&self, namespace: &str) -> Result<Repository, RepoError> {
        if namespace.contains('/') {
            return Err(RepoError::Config(format!(
                "namespace {namespace:?} cannot hold a '/'"
            )));
        }
        check_key(namespace)?;
        Ok(match self {
            Repository::Local(dir) => Repository::Local(dir.join(namespace)),
            Repository::S3(c) => {
                let mut c = c.clone();
                c.key_prefix = Some(match &c.key_prefix {
                    Some(p) => format!("{}/{namespace}", p.trim_end_matches('/')),
                    None => namespace.to_string(),
                });
                Repository::S3(c)
            }
        })
    }

    /// `key` as this repository stores it (checked, and under its prefix).
    fn full_key(&self, key: &str) -> Result<String, RepoError> {
        check_key(key)?;
        Ok(match self {
            Repository::S3(S3Config {
                key_prefix: Some(p),
                ..
            }) => format!("{}/{key}", p.trim_end_matches('/')),
            _ => key.to_string(),
        })
    }

    /// Where `key` is, for messages.
    pub fn describe(&self, key: &str) -> String {
        let key = self.full_key(key).unwrap_or_else(|_| key.to_string());
        match self {
            Repository::Local(dir) => dir.join(key).display().to_string(),
            Repository::S3(c) => c.url(&key),
        }
    }

    /// Store the file or directory at `src` under `key`.
    pub async fn put(&self, key: &str, src: &Path) -> Result<u64, RepoError> {
        let key = self.full_key(key)?;
        let key = key.as_str();
        match self {
            Repository::Local(dir) => {
                let dest = dir.join(key);
                if let Some(parent) = dest.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(io(format!("creating {}", parent.display())))?;
                }
                let size = tokio::fs::copy(src, &dest).await.map_err(io(format!(
                    "copying {} to {}",
                    src.display(),
                    dest.display()
                )))?;
                Ok(size)
            }
            Repository::S3(c) => {
                let store = c.store()?;
                let mut total = 0;
                for (file, object_key) in files_under(src, key)? {
                    total += upload(&store, c, &file, &object_key).await?;
                }
                Ok(total)
            }
        }
    }

    /// Fetch what `key` holds to `dest`: the object as a file, or (a directory stored without
    /// an archive) every object under `key/` as files under `dest`.
    pub async fn get(&self, key: &str, dest: &Path) -> Result<(), RepoError> {
        let key = self.full_key(key)?;
        let key = key.as_str();
        match self {
            Repository::Local(dir) => {
                let src = dir.join(key);
                tokio::fs::copy(&src, dest)
                    .await
                    .map(|_| ())
                    .map_err(io(format!(
                        "artifact {} not found in the repository",
                        src.display()
                    )))
            }
            Repository::S3(c) => {
                let store = c.store()?;
                let path = ObjectPath::from(key);
                match store.get(&path).await {
                    Ok(r) => write_stream(r, dest, &c.url(key)).await,
                    Err(object_store::Error::NotFound { .. }) => {
                        let listed = under(&store, c, key).await?;
                        if listed.is_empty() {
                            return Err(RepoError::Config(format!(
                                "artifact {} not found in the repository",
                                c.url(key)
                            )));
                        }
                        for meta in listed {
                            // An object whose name would climb out of `dest` is not fetched.
                            let rel = relative(key, &meta.location);
                            if check_key(&rel).is_err() {
                                continue;
                            }
                            let target = dest.join(rel);
                            if let Some(parent) = target.parent() {
                                tokio::fs::create_dir_all(parent)
                                    .await
                                    .map_err(io(format!("creating {}", parent.display())))?;
                            }
                            let r = store.get(&meta.location).await.map_err(|source| {
                                RepoError::Store {
                                    what: format!("downloading {}", c.url(meta.location.as_ref())),
                                    source,
                                }
                            })?;
                            write_stream(r, &target, &c.url(meta.location.as_ref())).await?;
                        }
                        Ok(())
                    }
                    Err(source) => Err(RepoError::Store {
                        what: format!("downloading {}", c.url(key)),
                        source,
                    }),
                }
            }
        }
    }

    /// What `key` holds, as a stream of chunks (an API serving a download reads it so, never
    /// holding a whole artifact); `NotFound`-like errors say the key's place.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, RepoError>>, RepoError>
    {
        use futures::StreamExt;
        let key = self.full_key(key)?;
        let key = key.as_str();
        match self {
            Repository::Local(dir) => {
                let path = dir.join(key);
                let file = tokio::fs::File::open(&path).await.map_err(io(format!(
                    "artifact {} not found in the repository",
                    path.display()
                )))?;
                let what = path.display().to_string();
                Ok(futures::stream::unfold(Some(file), move |file| {
                    let what = what.clone();
                    async move {
                        use tokio::io::AsyncReadExt;
                        let mut file = file?;
                        let mut buf = vec![0u8; 256 << 10];
                        match file.read(&mut buf).await {
                            Ok(0) => None,
                            Ok(n) => {
                                buf.truncate(n);
                                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
                            }
                            Err(e) => Some((Err(io(format!("reading {what}"))(e)), None)),
                        }
                    }
                })
                .boxed())
            }
            Repository::S3(c) => {
                let store = c.store()?;
                let url = c.url(key);
                let r =
                    store
                        .get(&ObjectPath::from(key))
                        .await
                        .map_err(|source| RepoError::Store {
                            what: format!("downloading {url}"),
                            source,
                        })?;
                Ok(r.into_stream()
                    .map(move |chunk| {
                        chunk.map_err(|source| RepoError::Store {
                            what: format!("downloading {url}"),
                            source,
                        })
                    })
                    .boxed())
            }
        }
    }

    /// The files under `key` when it is a directory (a directory saved without an archive):
    /// their paths relative to it, sorted; empty when `key` is one file or nothing.
    pub async fn list(&self, key: &str) -> Result<Vec<String>, RepoError> {
        let key = self.full_key(key)?;
        let key = key.as_str();
        match self {
            Repository::Local(dir) => {
                let root = dir.join(key);
                if !root.is_dir() {
                    return Ok(Vec::new());
                }
                let mut out: Vec<String> = files_under(&root, "")?
                    .into_iter()
                    .map(|(_, k)| k.trim_start_matches('/').to_string())
                    .collect();
                out.sort();
                Ok(out)
            }
            Repository::S3(c) => {
                let store = c.store()?;
                let mut out: Vec<String> = under(&store, c, key)
                    .await?
                    .iter()
                    .map(|m| relative(key, &m.location))
                    .collect();
                out.sort();
                Ok(out)
            }
        }
    }

    /// The bytes `key` holds (every object under it, for a directory); 0 if it is not there.
    pub async fn size(&self, key: &str) -> Result<u64, RepoError> {
        let key = self.full_key(key)?;
        let key = key.as_str();
        match self {
            Repository::Local(dir) => Ok(local_size(&dir.join(key))),
            Repository::S3(c) => {
                let store = c.store()?;
                match store.head(&ObjectPath::from(key)).await {
                    Ok(m) => Ok(m.size),
                    Err(object_store::Error::NotFound { .. }) => {
                        Ok(under(&store, c, key).await?.iter().map(|m| m.size).sum())
                    }
                    Err(source) => Err(RepoError::Store {
                        what: format!("reading {}", c.url(key)),
                        source,
                    }),
                }
            }
        }
    }

    /// Remove what `key` holds (artifact garbage collection).
    pub async fn delete(&self, key: &str) -> Result<(), RepoError> {
        let key = self.full_key(key)?;
        let key = key.as_str();
        match self {
            Repository::Local(dir) => {
                let p = dir.join(key);
                let r = if p.is_dir() {
                    tokio::fs::remove_dir_all(&p).await
                } else {
                    tokio::fs::remove_file(&p).await
                };
                match r {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(io(format!("removing {}", p.display()))(e))
                    }
                    _ => Ok(()),
                }
            }
            Repository::S3(c) => {
                let store = c.store()?;
                let mut doomed = vec![ObjectPath::from(key)];
                let listed = under(&store, c, key).await.unwrap_or_default();
                doomed.extend(listed.into_iter().map(|m| m.location));
                for p in doomed {
                    match store.delete(&p).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(source) => {
                            return Err(RepoError::Store {
                                what: format!("deleting {}", c.url(p.as_ref())),
                                source,
                            })
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The same, from code that is not async (the pod wrapper): runs on a runtime of its own.
    pub fn blocking<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RepoError>>,
    ) -> Result<T, RepoError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("starting the artifact runtime".into()))?
            .block_on(f)
    }
}

/// The objects under `key/` (a directory saved without an archive).
async fn under(
    store: &Arc<dyn ObjectStore>,
    c: &S3Config,
    key: &str,
) -> Result<Vec<object_store::ObjectMeta>, RepoError> {
    let prefix = ObjectPath::from(format!("{}/", key.trim_end_matches('/')));
    store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| RepoError::Store {
            what: format!("listing {}", c.url(key)),
            source,
        })
}

/// An object's path relative to the directory `key`.
fn relative(key: &str, location: &ObjectPath) -> String {
    let prefix = format!("{}/", key.trim_end_matches('/'));
    let loc = location.as_ref();
    loc.strip_prefix(prefix.as_str())
        .unwrap_or(loc)
        .trim_start_matches('/')
        .to_string()
}

fn local_size(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| local_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// The files to upload for `src` under `key`: itself, or every file of a directory.
fn files_under(src: &Path, key: &str) -> Result<Vec<(PathBuf, String)>, RepoError> {
    if !src.is_dir() {
        return Ok(vec![(src.to_path_buf(), key.to_string())]);
    }
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(io(format!("reading {}", dir.display())))? {
            let e = e.map_err(io(format!("reading {}", dir.display())))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(src) {
                out.push((
                    p.clone(),
                    format!("{}/{}", key.trim_end_matches('/'), rel.display()),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn upload(
    store: &Arc<dyn ObjectStore>,
    c: &S3Config,
    file: &Path,
    key: &str,
) -> Result<u64, RepoError> {
    let what = || format!("uploading {} to {}", file.display(), c.url(key));
    let mut reader = tokio::fs::File::open(file).await.map_err(io(what()))?;
    // Multipart above 10 MiB, one PUT below: object_store's buffered writer decides.
    let mut writer = object_store::buffered::BufWriter::with_capacity(
        store.clone(),
        ObjectPath::from(key),
        10 << 20,
    );
    let copied = tokio::io::copy(&mut reader, &mut writer).await;
    let copied = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = writer.abort().await;
            return Err(RepoError::Io {
                what: what(),
                source: e,
            });
        }
    };
    writer.shutdown().await.map_err(io(what()))?;
    Ok(copied)
}

async fn write_stream(r: object_store::GetResult, dest: &Path, url: &str) -> Result<(), RepoError> {
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(format!("creating {}", parent.display())))?;
    }
    let mut out = tokio::fs::File::create(dest)
        .await
        .map_err(io(format!("creating {}", dest.display())))?;
    let mut stream = r.into_stream();
    while let Some(chunk) = stream.try_next().await.map_err(|source| RepoError::Store {
        what: format!("downloading {url}"),
        source,
    })? {
        out.write_all(&chunk)
            .await
            .map_err(io(format!("writing {}", dest.display())))?;
    }
    out.flush()
        .await
        .map_err(io(format!("writing {}", dest.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_repository_and_the_tenant() {
        for bad in [
            "/etc/shadow",
            "../x",
            "a/../../b",
            "a//b",
            "./a",
            "",
            "a\\..\\b",
            "a/./b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["wf/pod/out.tgz", "a", "dir/"] {
            assert!(check_key(good).is_ok(), "{good:?} refused");
        }
        let repo = Repository::Local("/r".into())
            .for_namespace("team-a")
            .unwrap();
        assert_eq!(repo.describe("wf/p/a.tgz"), "/r/team-a/wf/p/a.tgz");
        assert!(Repository::Local("/r".into()).for_namespace("..").is_err());
        let s3 = Repository::S3(S3Config::for_artifact("h:1", "b", None, true, None))
            .for_namespace("team-b")
            .unwrap();
        assert_eq!(s3.describe("wf/p/a.tgz"), "s3://b/team-b/wf/p/a.tgz");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(repo.delete("/etc")).unwrap_err().to_string();
        assert!(err.contains("not a relative key"), "{err}");
    }
}
