//! Per-GPU metrics under DCGM exporter's names (`DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED`,
//! `DCGM_FI_DEV_GPU_TEMP`, `DCGM_FI_DEV_POWER_USAGE`): read through NVML on `--cluster local`,
//! modelled from what pods hold on virtual clusters.

use prometheus_client::encoding::DescriptorEncoder;

use cluster_shell::{GpuUsage, Holder, NodeUsage};

use crate::encode::gauges;
use crate::snapshot::{GpuSample, Snapshot};

/// Who holds a GPU and how much of it each holds: a whole GPU 1, a fraction its share, a MIG
/// instance its compute slices over 7 (an unknown profile counts whole).
pub(crate) fn holdings(d: &GpuUsage) -> impl Iterator<Item = (&Holder, f64)> {
    let whole = d
        .holders
        .iter()
        .map(|h| (h, h.gpu_milli.map_or(1.0, |m| m as f64 / 1000.0)));
    let instances = d.instances.iter().filter_map(|i| {
        let share = scheduler::mig::compute_slices(&i.profile).map_or(1.0, |s| s as f64 / 7.0);
        i.holder.as_ref().map(|h| (h, share))
    });
    whole.chain(instances)
}

/// GPU memory of a modelled GPU: the H100/H200 family ONYX's virtual nodes carry.
fn modelled_fb_mib(model: &str) -> f64 {
    if model.to_ascii_lowercase().contains("h200") {
        141.0 * 1024.0
    } else {
        80.0 * 1024.0
    }
}

/// The GPUs of virtual nodes, modelled from what pods hold of each: a held GPU is busy, its
/// memory used in proportion, its temperature and power rising with it (idle 32 °C / 70 W,
/// full 72 °C / 700 W: an H100 SXM5's range).
pub fn modelled_gpus(nodes: &[NodeUsage]) -> Vec<GpuSample> {
    let mut out = Vec::new();
    for n in nodes {
        for d in &n.devices {
            let held = holdings(d).map(|(_, share)| share).sum::<f64>().min(1.0);
            let fb = modelled_fb_mib(&n.gpu_model);
            out.push(GpuSample {
                node: n.name.clone(),
                index: d.index,
                uuid: d.uuid.clone(),
                model: n.gpu_model.clone(),
                util_percent: (held * 100.0).round(),
                fb_used_mib: (fb * held).round(),
                fb_free_mib: (fb * (1.0 - held)).round(),
                temp_celsius: (32.0 + 40.0 * held).round(),
                power_watts: (70.0 + 630.0 * held).round(),
            });
        }
    }
    out
}

/// This machine's GPUs through NVML (none when the library or a GPU is missing).
pub fn local_gpus(node: &str) -> Vec<GpuSample> {
    gpu_discovery::readings()
        .into_iter()
        .map(|r| GpuSample {
            node: node.to_string(),
            index: r.index,
            uuid: r.uuid,
            model: r.model,
            util_percent: r.util_percent,
            fb_used_mib: r.fb_used_mib,
            fb_free_mib: r.fb_free_mib,
            temp_celsius: r.temp_celsius,
            power_watts: r.power_watts,
        })
        .collect()
}

/// The GPUs' families, DCGM exporter's names and labels.
pub(crate) fn encode(enc: &mut DescriptorEncoder, s: &Snapshot) -> std::fmt::Result {
    // GPUs: DCGM exporter's names and labels.
    let dcgm = |g: &GpuSample, v: f64| {
        (
            vec![
                ("gpu", g.index.to_string()),
                ("UUID", g.uuid.clone()),
                ("device", format!("nvidia{}", g.index)),
                ("modelName", g.model.clone()),
                ("Hostname", g.node.clone()),
            ],
            v,
        )
    };
    let gpus = &s.gpus;
    gauges(
        enc,
        "DCGM_FI_DEV_GPU_UTIL",
        "GPU utilization (in %).",
        gpus.iter().map(|g| dcgm(g, g.util_percent)),
    )?;
    gauges(
        enc,
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer memory used (in MiB).",
        gpus.iter().map(|g| dcgm(g, g.fb_used_mib)),
    )?;
    gauges(
        enc,
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        gpus.iter().map(|g| dcgm(g, g.fb_free_mib)),
    )?;
    gauges(
        enc,
        "DCGM_FI_DEV_GPU_TEMP",
        "GPU temperature (in C).",
        gpus.iter().map(|g| dcgm(g, g.temp_celsius)),
    )?;
    gauges(
        enc,
        "DCGM_FI_DEV_POWER_USAGE",
        "Power draw (in W).",
        gpus.iter().map(|g| dcgm(g, g.power_watts)),
    )?;
    Ok(())
}
