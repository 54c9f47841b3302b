//! Synchronization (`synchronization.mutex` / `.semaphore`): named locks with a holder count
//! and a limit (1 for a mutex, the ConfigMap's number for a semaphore).
//!
//! A node takes its lock before its pod starts and gives it back in `finish`, so a lock is
//! never held by a fulfilled node.

use crate::state::Engine;

impl Engine {
    pub(crate) fn lock_name(
        &self,
        sync: &workflow_model::Synchronization,
    ) -> Result<String, String> {
        if let Some(m) = &sync.mutex {
            return Ok(format!(
                "mutex/{}/{}",
                m.namespace
                    .clone()
                    .unwrap_or_else(|| self.namespace.clone()),
                m.name
            ));
        }
        if let Some(s) = &sync.semaphore {
            let r = s
                .config_map_key_ref
                .as_ref()
                .ok_or("semaphore needs configMapKeyRef")?;
            let limit = self
                .config_map_value(&r.name, &r.key, false, None)
                .map_err(|e| format!("failed to get semaphore limit: {e}"))?;
            let n: usize = limit.trim().parse().map_err(|_| {
                format!(
                    "semaphore limit '{limit}' in ConfigMap {} is not a number",
                    r.name
                )
            })?;
            return Ok(format!(
                "semaphore/{}/{}/{}#{n}",
                self.namespace, r.name, r.key
            ));
        }
        Err("synchronization needs a mutex or a semaphore".into())
    }

    fn lock_limit(lock: &str) -> usize {
        lock.rsplit_once('#')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(1)
    }

    pub(crate) fn try_acquire(&mut self, lock: &str) -> bool {
        let limit = Self::lock_limit(lock);
        let e = self.locks.entry(lock.to_string()).or_insert((0, limit));
        if e.0 < e.1 {
            e.0 += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn release_lock(&mut self, lock: &str) {
        if let Some(e) = self.locks.get_mut(lock) {
            e.0 = e.0.saturating_sub(1);
        }
    }
}
