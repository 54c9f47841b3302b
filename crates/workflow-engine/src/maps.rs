//! The engine's hash maps: foldhash with a fixed state.
//!
//! SipHash was a tenth of the time of a 10^5-task DAG, the keys are not attacker-chosen beyond
//! what the workflow's author can already make the engine do, and a fixed state keeps
//! iteration order the same every run (determinism: same events, same actions).

pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;
