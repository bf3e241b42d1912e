//! Interface queries and settings the appliance needs around its sockets:
//! the index, the attached XDP program, promiscuous mode, the RX queue
//! count, and a socket's statistics.

#![allow(
    unsafe_code,
    reason = "ioctls, getsockopt and libbpf queries take raw pointers; every block states why it is sound"
)]

use std::ffi::CString;
use std::io;

use super::setup::{quiet_libraries, XdpError};

/// The interface's index, or `None` when there is no such interface.
pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// The XDP program attached to an interface: its id and attach mode
/// (`native`, `generic`, `offload`), or `None`.
pub fn attached_program(name: &str) -> Option<(u32, &'static str)> {
    quiet_libraries();
    let index = if_index(name)?;
    // SAFETY: an all-zero bpf_xdp_query_opts is its documented initial state.
    let mut opts: libxdp_sys::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<libxdp_sys::bpf_xdp_query_opts>();
    // SAFETY: `opts` is a valid, sized options struct for the call.
    let rc = unsafe { libxdp_sys::bpf_xdp_query(index as i32, 0, &mut opts) };
    if rc != 0 || opts.prog_id == 0 {
        return None;
    }
    // XDP_ATTACHED_DRV, _SKB and _HW of linux/if_link.h.
    let mode = match opts.attach_mode {
        1 => "native",
        2 => "generic",
        3 => "offload",
        _ => "multiple",
    };
    Some((opts.prog_id, mode))
}

/// Removes whatever XDP program is attached to the interface (one left by a
/// killed earlier run, which would otherwise keep steering frames into a
/// socket that no longer exists). Returns the id of the program removed.
pub fn detach_any(name: &str) -> Result<Option<u32>, XdpError> {
    let Some((id, _)) = attached_program(name) else {
        return Ok(None);
    };
    let index = if_index(name).ok_or_else(|| XdpError::NoInterface(name.to_owned()))?;
    for flags in [
        libbpf_sys::XDP_FLAGS_DRV_MODE,
        libbpf_sys::XDP_FLAGS_SKB_MODE,
        libbpf_sys::XDP_FLAGS_HW_MODE,
    ] {
        // SAFETY: detaching by interface index; no pointers but the null options.
        unsafe { libxdp_sys::bpf_xdp_detach(index as i32, flags, std::ptr::null()) };
    }
    match attached_program(name) {
        None => Ok(Some(id)),
        Some((left, mode)) => Err(XdpError::Config(format!(
            "interface {name}: cannot remove the XDP program {left} ({mode}) already attached"
        ))),
    }
}

/// A socket's `XDP_STATISTICS`, read by descriptor (from another thread
/// than the worker's, e.g. a metrics scrape).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// The statistics of the AF_XDP socket `fd`; `None` if it is not one (any
/// more).
pub fn socket_stats(fd: i32) -> Option<SocketStats> {
    const SOL_XDP: libc::c_int = 283;
    const XDP_STATISTICS: libc::c_int = 7;
    let mut raw = [0u64; 6];
    let mut len = size_of_val(&raw) as libc::socklen_t;
    // SAFETY: `raw` is writable for `len` bytes; the kernel writes at most that.
    let rc = unsafe { libc::getsockopt(fd, SOL_XDP, XDP_STATISTICS, raw.as_mut_ptr().cast(), &mut len) };
    (rc == 0).then_some(SocketStats {
        rx_dropped: raw[0],
        rx_invalid_descs: raw[1],
        tx_invalid_descs: raw[2],
        rx_ring_full: raw[3],
        rx_fill_ring_empty_descs: raw[4],
        tx_ring_empty_descs: raw[5],
    })
}

/// Sets or clears promiscuous mode on an interface; returns whether it was on
/// before (to restore it on exit).
pub fn set_promiscuous(name: &str, on: bool) -> io::Result<bool> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: a datagram socket used only for the two interface ioctls below,
    // closed before returning; `ifreq` is zeroed and its name NUL-terminated.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let result = (|| {
            if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(io::Error::last_os_error());
            }
            let flags = req.ifr_ifru.ifru_flags;
            let was = flags & libc::IFF_PROMISC as libc::c_short != 0;
            if was != on {
                req.ifr_ifru.ifru_flags = if on {
                    flags | libc::IFF_PROMISC as libc::c_short
                } else {
                    flags & !(libc::IFF_PROMISC as libc::c_short)
                };
                if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(was)
        })();
        libc::close(fd);
        result
    }
}

/// How many receive queues the interface has (from sysfs; 1 if unknown).
pub fn rx_queues(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}
