//! The `[appliance]` table: which interfaces are the bridge's two ports and how
//! the workers poll them. Only `rampart run` needs it; `validate`, `explain`
//! and `replay` accept a file with or without it.

use serde::{Deserialize, Serialize};

use crate::model::ModelError;
use crate::wake::MAX_MICROS;

/// What a worker does when no frame arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleSetting {
    /// Poll without pause: lowest latency, one core at 100 % per worker.
    Busy,
    /// Spin briefly after the last frame, then sleep until the next one.
    #[default]
    Adaptive,
}

/// How quickly idle CPUs must wake while adaptive workers sleep
/// ([`crate::wake`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeLatencySetting {
    /// Hold a CPU latency request of this many microseconds while running.
    Micros(u32),
    /// Hold none: idle states are the kernel's choice.
    Kernel,
}

impl Default for WakeLatencySetting {
    fn default() -> Self {
        WakeLatencySetting::Micros(0)
    }
}

const WAKE_KERNEL: &str = "kernel";

impl Serialize for WakeLatencySetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WakeLatencySetting::Micros(us) => s.serialize_u32(*us),
            WakeLatencySetting::Kernel => s.serialize_str(WAKE_KERNEL),
        }
    }
}

impl<'de> Deserialize<'de> for WakeLatencySetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WakeLatencySetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "microseconds (0-{MAX_MICROS}) or \"{WAKE_KERNEL}\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(WakeLatencySetting::Micros)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(WakeLatencySetting::Micros)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == WAKE_KERNEL {
                    Ok(WakeLatencySetting::Kernel)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    #[default]
    Auto,
    Native,
    Generic,
}

/// AF_XDP bind mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindModeSetting {
    #[default]
    Auto,
    ZeroCopy,
    Copy,
}

/// The `[appliance]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Appliance {
    /// The interface of side A (for example the client network).
    pub port_a: String,
    /// The interface of side B.
    pub port_b: String,
    /// Worker threads; worker i serves receive queue i of both ports.
    pub workers: u32,
    /// Cores to pin the workers to, one per worker. Default: cores 1, 2, ...
    /// (core 0 is left to the control thread and the system), or core 0 on a
    /// one-core machine.
    pub cores: Option<Vec<u32>>,
    pub idle: IdleSetting,
    /// With `idle = adaptive`: the CPU wake-up latency requested while
    /// running.
    pub wake_latency_us: WakeLatencySetting,
    pub xdp_mode: XdpModeSetting,
    pub bind_mode: BindModeSetting,
    /// Ask the kernel for busy polling on the sockets.
    pub busy_poll: bool,
    /// Descriptors per AF_XDP ring (RX, TX, fill, completion), a power of two.
    pub ring_size: u32,
    /// The ports' MTU: longer frames are dropped as `oversize`.
    pub mtu: u32,
}

impl Default for Appliance {
    fn default() -> Self {
        Appliance {
            port_a: String::new(),
            port_b: String::new(),
            workers: 1,
            cores: None,
            idle: IdleSetting::Adaptive,
            wake_latency_us: WakeLatencySetting::Micros(0),
            xdp_mode: XdpModeSetting::Auto,
            bind_mode: BindModeSetting::Auto,
            busy_poll: false,
            ring_size: 2048,
            mtu: 1500,
        }
    }
}

/// Ethernet header plus two VLAN tags: a frame may exceed the MTU by this much.
pub const L2_OVERHEAD: u32 = 14 + 8;
/// The largest MTU a 2 KiB UMEM frame holds (2048 minus the kernel's 256-byte
/// headroom, minus [`L2_OVERHEAD`]).
pub const MAX_MTU: u32 = 2048 - 256 - L2_OVERHEAD;
pub const MAX_WORKERS: u32 = 64;

impl Appliance {
    /// The longest frame accepted.
    pub fn max_frame(&self) -> usize {
        (self.mtu + L2_OVERHEAD) as usize
    }

    /// The cores the workers are pinned to, on a machine with `available` cores.
    pub fn worker_cores(&self, available: u32) -> Vec<u32> {
        match &self.cores {
            Some(cores) => cores.clone(),
            None if available <= 1 => vec![0; self.workers as usize],
            None => (0..self.workers).map(|i| 1 + i % (available - 1)).collect(),
        }
    }

    /// Checks ranges and the ports; returns every problem found.
    pub fn validate(&self) -> Vec<ModelError> {
        let mut errs = Vec::new();
        let bad = |field: &'static str, msg: String| ModelError::field("appliance", field, msg);
        for (field, name) in [("port_a", &self.port_a), ("port_b", &self.port_b)] {
            if name.is_empty() {
                errs.push(bad(
                    field,
                    "is required: the interface of this side of the bridge".into(),
                ));
            } else if name.len() > 15 || name.contains(['/', ' ', '\0', ':']) {
                errs.push(bad(field, format!("{name:?} is not a valid interface name")));
            }
        }
        if !self.port_a.is_empty() && self.port_a == self.port_b {
            errs.push(bad(
                "port_b",
                format!("{:?} is also port_a; the ports must differ", self.port_b),
            ));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            errs.push(bad(
                "workers",
                format!("{} is out of range 1-{MAX_WORKERS}", self.workers),
            ));
        }
        if let Some(cores) = &self.cores {
            if cores.len() != self.workers as usize {
                errs.push(bad(
                    "cores",
                    format!(
                        "lists {} cores for {} workers; give one per worker",
                        cores.len(),
                        self.workers
                    ),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for core in cores {
                if !seen.insert(core) {
                    errs.push(bad("cores", format!("core {core} is listed twice")));
                }
            }
        }
        if !self.ring_size.is_power_of_two() || !(64..=16384).contains(&self.ring_size) {
            errs.push(bad(
                "ring_size",
                format!("{} must be a power of two in 64-16384", self.ring_size),
            ));
        }
        if let WakeLatencySetting::Micros(us) = self.wake_latency_us {
            if us > MAX_MICROS {
                errs.push(bad(
                    "wake_latency_us",
                    format!("{us} is out of range 0-{MAX_MICROS} µs (or \"{WAKE_KERNEL}\")"),
                ));
            }
        }
        if !(68..=MAX_MTU).contains(&self.mtu) {
            errs.push(bad("mtu", format!("{} is out of range 68-{MAX_MTU}", self.mtu)));
        }
        errs
    }
}
