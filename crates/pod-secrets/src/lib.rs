//! Kubernetes Secrets for pods: `env[].valueFrom.secretKeyRef` and `secret` volumes, resolved
//! by the pod's wrapper when the pod starts, from the server's secrets file.
//!
//! A pod's spec (`pod.json`) holds only references (secret name and key); the values live in
//! the wrapper's memory (the containers' environments) and in the secret volumes' files,
//! which are removed when the pod ends. Nothing of them reaches the store or a log.
//!
//! The secrets file is TOML, a table per namespace and a table per secret in it:
//!
//! ```toml
//! [default.db]
//! password = "…"
//! ```

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An environment variable whose value is a secret's key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecretEnv {
    pub name: String,
    pub secret: String,
    pub key: String,
    #[serde(default)]
    pub optional: bool,
}

/// A `secret` volume: files named after the secret's keys (or `items`' paths) in `dir`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecretVolume {
    pub dir: PathBuf,
    pub secret: String,
    /// (key, path in the volume); empty: every key, under its own name.
    #[serde(default)]
    pub items: Vec<(String, String)>,
    #[serde(default)]
    pub optional: bool,
    /// The files' mode (`defaultMode`; 0644 unless set).
    #[serde(default)]
    pub mode: Option<u32>,
}

/// A container's secret references and the environment their values go into.
pub type EnvTarget<'a> = (&'a [SecretEnv], &'a mut Vec<(String, String)>);

/// Every namespace's secrets.
#[derive(Debug, Default)]
pub struct Secrets(BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>);

impl Secrets {
    pub fn load(file: &Path) -> Result<Secrets, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("the secrets file {}: {e}", file.display()))?;
        toml::from_str(&text)
            .map(Secrets)
            .map_err(|e| format!("the secrets file {}: {e}", file.display()))
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        self.0.get(namespace)?.get(name)
    }

    /// A secret's key, as the kubelet words what is missing.
    pub fn value(&self, namespace: &str, name: &str, key: &str) -> Result<String, String> {
        let s = self
            .get(namespace, name)
            .ok_or_else(|| format!("secret \"{name}\" not found in namespace \"{namespace}\""))?;
        s.get(key)
            .cloned()
            .ok_or_else(|| format!("couldn't find key {key} in Secret {namespace}/{name}"))
    }
}

/// The value of `valueFrom.secretKeyRef`, if that is what an env var is.
pub fn secret_ref(value_from: &serde_json::Value) -> Option<(String, String, bool)> {
    let r = value_from.get("secretKeyRef")?;
    Some((
        r.get("name")?.as_str()?.to_string(),
        r.get("key")?.as_str()?.to_string(),
        r.get("optional").and_then(|o| o.as_bool()).unwrap_or(false),
    ))
}

/// Fill in a pod's secret references: environment values into `env` (memory only) and the
/// volumes' files. `secrets` is `None` when the server has no secrets file.
pub fn resolve(
    namespace: &str,
    secrets: Option<&Secrets>,
    env: &mut [EnvTarget<'_>],
    volumes: &[SecretVolume],
) -> Result<(), String> {
    let empty = Secrets::default();
    let wanted = env.iter().any(|(refs, _)| !refs.is_empty()) || !volumes.is_empty();
    if !wanted {
        return Ok(());
    }
    let source = match secrets {
        Some(s) => s,
        None => &empty,
    };
    for (refs, out) in env.iter_mut() {
        for r in refs.iter() {
            match source.value(namespace, &r.secret, &r.key) {
                Ok(v) => out.push((r.name.clone(), v)),
                Err(_) if r.optional => {}
                Err(e) => return Err(no_source(secrets, e)),
            }
        }
    }
    for v in volumes {
        let Some(data) = source.get(namespace, &v.secret) else {
            if v.optional {
                continue;
            }
            return Err(no_source(
                secrets,
                format!(
                    "secret \"{}\" not found in namespace \"{namespace}\"",
                    v.secret
                ),
            ));
        };
        std::fs::create_dir_all(&v.dir).map_err(|e| format!("{}: {e}", v.dir.display()))?;
        let items: Vec<(String, String)> = if v.items.is_empty() {
            data.keys().map(|k| (k.clone(), k.clone())).collect()
        } else {
            v.items.clone()
        };
        for (key, rel) in items {
            let Some(value) = data.get(&key) else {
                return Err(format!(
                    "couldn't find key {key} in Secret {namespace}/{}",
                    v.secret
                ));
            };
            if rel.contains("..") || rel.starts_with('/') {
                return Err(format!(
                    "secret volume path {rel:?} must be relative and stay inside the volume"
                ));
            }
            let path = v.dir.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(v.mode.unwrap_or(0o644)),
            );
        }
    }
    Ok(())
}

fn no_source(secrets: Option<&Secrets>, e: String) -> String {
    if secrets.is_none() {
        format!("{e}: this server keeps no secrets (set [secrets] file in its config)")
    } else {
        e
    }
}

/// Remove what the secret volumes held, once the pod is done.
pub fn remove_volumes(volumes: &[SecretVolume]) {
    for v in volumes {
        let _ = std::fs::remove_dir_all(&v.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_say_what_is_missing() {
        let s: Secrets = Secrets(
            toml::from_str("[default.db]\npassword = \"p4ss\"\nuser = \"onyx\"\n").unwrap(),
        );
        let refs = vec![SecretEnv {
            name: "PASSWORD".into(),
            secret: "db".into(),
            key: "password".into(),
            optional: false,
        }];
        let mut env = Vec::new();
        resolve("default", Some(&s), &mut [(&refs, &mut env)], &[]).unwrap();
        assert_eq!(env, [("PASSWORD".to_string(), "p4ss".to_string())]);
        let mut env = Vec::new();
        assert_eq!(
            resolve("team-a", Some(&s), &mut [(&refs, &mut env)], &[]).unwrap_err(),
            "secret \"db\" not found in namespace \"team-a\""
        );
        let wrong = vec![SecretEnv {
            key: "token".into(),
            ..refs[0].clone()
        }];
        assert_eq!(
            resolve("default", Some(&s), &mut [(&wrong, &mut env)], &[]).unwrap_err(),
            "couldn't find key token in Secret default/db"
        );
        assert!(resolve("default", None, &mut [(&refs, &mut env)], &[])
            .unwrap_err()
            .contains("keeps no secrets"));
        let dir = std::env::temp_dir().join(format!("onyx-secret-vol-{}", std::process::id()));
        let vol = SecretVolume {
            dir: dir.clone(),
            secret: "db".into(),
            items: vec![],
            optional: false,
            mode: Some(0o400),
        };
        resolve("default", Some(&s), &mut [], std::slice::from_ref(&vol)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("user")).unwrap(), "onyx");
        remove_volumes(&[vol]);
        assert!(!dir.exists());
    }
}
