//! The Pod Security Standards levels, and the lists of what the baseline and restricted
//! levels allow (capabilities, sysctls, SELinux types, volume sources, AppArmor annotation).

use serde::Deserialize;

/// A Pod Security Standards level, as the namespace label
/// `pod-security.kubernetes.io/enforce` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Unrestricted: admits everything.
    Privileged,
    /// Prevents known privilege escalations.
    #[default]
    Baseline,
    /// Baseline plus current pod-hardening practice.
    Restricted,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        })
    }
}

/// Capabilities the baseline level lets a container add.
pub(super) const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls the baseline level allows (the "safe" set).
pub(super) const SAFE_SYSCTLS: [&str; 6] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];

pub(super) const SELINUX_TYPES: [&str; 4] =
    ["", "container_t", "container_init_t", "container_kvm_t"];

/// Volume sources the restricted level allows.
pub(super) const RESTRICTED_VOLUME_SOURCES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

pub(super) const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";
