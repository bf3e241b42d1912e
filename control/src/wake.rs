//! Keeping idle cores quick to wake: the kernel's CPU latency request
//! (`/dev/cpu_dma_latency`, the CPU latency QoS).
//!
//! An adaptive worker sleeps in `poll(2)`; how soon it runs again when a frame
//! arrives depends on how deep its core went idle. Leaving a deep C-state on
//! bare metal, or a halted vCPU in a VM, takes up to hundreds of
//! microseconds: on this project's 2-vCPU KVM machine the wake-up p99 was
//! 79-201 µs after 10-20 ms of idleness without a request, 23-82 µs with one
//! of 0 µs (`rampart-bench wakeup`). While a request is held, the cpuidle
//! governors choose only idle states that are left within it (0: the
//! kernel's polling idle loop, which still gives the core at once to any
//! task that wants it), on every CPU. The kernel honours the lowest request
//! held by anyone, and drops this one when its file is closed, however the
//! process ends.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};

/// The kernel's CPU latency request device.
pub const DEVICE: &str = "/dev/cpu_dma_latency";

/// The longest request accepted, in microseconds (one second).
pub const MAX_MICROS: u32 = 1_000_000;

/// A held request that idle CPUs wake within a bound; dropped with this value.
#[derive(Debug)]
pub struct WakeLatency {
    _file: File,
}

impl WakeLatency {
    /// Asks the kernel that idle CPUs wake within `micros` microseconds, until
    /// the returned value is dropped. Needs root (or write access to
    /// [`DEVICE`]).
    pub fn hold(micros: u32) -> io::Result<WakeLatency> {
        if micros > MAX_MICROS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{micros} µs is over the {MAX_MICROS} µs accepted"),
            ));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .open(DEVICE)
            .map_err(|e| io::Error::new(e.kind(), format!("{DEVICE}: {e}")))?;
        // At most MAX_MICROS, so it fits.
        let value = micros as i32;
        file.write_all(&value.to_ne_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("writing {DEVICE}: {e}")))?;
        Ok(WakeLatency { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The bound the kernel applies now: the lowest request anyone holds
    /// (about 2000 s when nobody holds one).
    fn current() -> io::Result<u32> {
        let mut value = [0u8; 4];
        File::open(DEVICE)?.read_exact(&mut value)?;
        Ok(u32::try_from(i32::from_ne_bytes(value)).unwrap_or(0))
    }

    #[test]
    fn a_held_request_bounds_the_kernels_latency_until_dropped() {
        rampart_testkit::require_root!("writing /dev/cpu_dma_latency");
        let held = WakeLatency::hold(3).unwrap();
        // Other processes (a running rampart) may hold lower requests.
        assert!(current().unwrap() <= 3);
        drop(held);
        let err = WakeLatency::hold(MAX_MICROS + 1).unwrap_err();
        assert!(err.to_string().contains("over the 1000000 µs"), "{err}");
    }
}
