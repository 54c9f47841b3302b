//! This machine's NVIDIA GPUs and their MIG instances, through NVML: the only crate of ONYX
//! that calls the driver (and the only `unsafe` it needs for it, where nvml-wrapper does not
//! reach). No driver, no GPUs: an empty list, never an error.

/// One GPU as NVML reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gpu {
    /// `GPU-…`
    pub uuid: String,
    /// Its MIG instances' profiles (`<g>g.<m>gb`) and UUIDs (`MIG-…`), in NVML's order; empty
    /// when the GPU is not in MIG mode.
    pub mig_profiles: Vec<String>,
    pub mig_uuids: Vec<String>,
}

/// One GPU's readings now, for the DCGM-shaped metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub index: usize,
    pub uuid: String,
    pub model: String,
    pub util_percent: f64,
    pub fb_used_mib: f64,
    pub fb_free_mib: f64,
    pub temp_celsius: f64,
    pub power_watts: f64,
}

/// Every GPU's readings, in NVML's index order (the library is loaded once per process).
pub fn readings() -> Vec<Reading> {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    static NVML: std::sync::OnceLock<Option<nvml_wrapper::Nvml>> = std::sync::OnceLock::new();
    let Some(nvml) = NVML.get_or_init(|| nvml_wrapper::Nvml::init().ok()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..nvml.device_count().unwrap_or(0) {
        let Ok(d) = nvml.device_by_index(i) else {
            continue;
        };
        let mem = d.memory_info().ok();
        out.push(Reading {
            index: i as usize,
            uuid: d.uuid().unwrap_or_default(),
            model: d.name().unwrap_or_default(),
            util_percent: d.utilization_rates().map_or(0.0, |u| u.gpu as f64),
            fb_used_mib: mem.as_ref().map_or(0.0, |m| (m.used >> 20) as f64),
            fb_free_mib: mem.as_ref().map_or(0.0, |m| (m.free >> 20) as f64),
            temp_celsius: d
                .temperature(TemperatureSensor::Gpu)
                .map_or(0.0, |t| t as f64),
            power_watts: d.power_usage().map_or(0.0, |mw| mw as f64 / 1000.0),
        });
    }
    out
}

/// Every GPU of this machine, in NVML's index order.
pub fn local_gpus() -> Vec<Gpu> {
    let Ok(nvml) = nvml_wrapper::Nvml::init() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..nvml.device_count().unwrap_or(0) {
        let Ok(d) = nvml.device_by_index(i) else {
            continue;
        };
        let (mig_profiles, mig_uuids) = local_mig(&nvml, &d);
        out.push(Gpu {
            uuid: d.uuid().unwrap_or_default(),
            mig_profiles,
            mig_uuids,
        });
    }
    out
}

/// A GPU's MIG instances as NVML reports them: their profiles (`<g>g.<m>gb`, from the
/// instance's slice count and memory) and UUIDs. A GPU not in MIG mode has none.
/// nvml-wrapper does not wrap MIG device handles, so these two calls go to the library itself.
fn local_mig(nvml: &nvml_wrapper::Nvml, d: &nvml_wrapper::Device) -> (Vec<String>, Vec<String>) {
    use nvml_wrapper_sys::bindings::{nvmlDevice_t, nvmlReturn_enum_NVML_SUCCESS, NvmlLib};
    let mut profiles = Vec::new();
    let mut uuids = Vec::new();
    let on = d
        .mig_mode()
        .is_ok_and(|m| m.current == nvml_wrapper_sys::bindings::NVML_DEVICE_MIG_ENABLE);
    if !on {
        return (profiles, uuids);
    }
    // SAFETY: the library loaded is NVML itself, already loaded and initialised by `nvml`;
    // loading it again runs no initialiser of its own.
    let Ok(lib) = (unsafe { NvmlLib::new("libnvidia-ml.so.1") }) else {
        return (profiles, uuids);
    };
    let (Ok(max), Ok(by_index)) = (
        lib.nvmlDeviceGetMaxMigDeviceCount.as_ref(),
        lib.nvmlDeviceGetMigDeviceHandleByIndex.as_ref(),
    ) else {
        return (profiles, uuids);
    };
    let mut count = 0u32;
    // SAFETY: `d` is a live device handle of this NVML session, and `count` a local u32, the
    // out-parameter the C API declares.
    if unsafe { max(d.handle(), &mut count) } != nvmlReturn_enum_NVML_SUCCESS {
        return (profiles, uuids);
    }
    for i in 0..count {
        let mut handle: nvmlDevice_t = std::ptr::null_mut();
        // SAFETY: as above; `i` is below the count NVML gave, and `handle` a local out-pointer.
        if unsafe { by_index(d.handle(), i, &mut handle) } != nvmlReturn_enum_NVML_SUCCESS {
            continue;
        }
        // SAFETY: NVML returned `handle` for this session (`nvml`), which outlives `m`.
        let m = unsafe { nvml_wrapper::Device::new(handle, nvml) };
        let Ok(attr) = m.attributes() else { continue };
        // Profiles name memory in 5 or 10 GB steps (1g.10gb has 9.75 GiB usable).
        let gb = ((attr.memory_size_mb as f64 / 1000.0) / 5.0).round() as u64 * 5;
        let profile = format!("{}g.{gb}gb", attr.gpu_instance_slice_count);
        profiles.push(profile);
        uuids.push(m.uuid().unwrap_or_default());
    }
    (profiles, uuids)
}
