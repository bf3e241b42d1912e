//! Opening a worker's UMEM and its sockets: native XDP, then generic;
//! zero-copy bind, then copy; busy polling when the kernel accepts it.

#![allow(
    unsafe_code,
    reason = "socket options and libbpf calls take raw pointers; every block states why it is sound"
)]

use std::ffi::CString;
use std::fmt;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{Socket, Umem};

use super::{attached_program, if_index, Audit, Io, Owner, XskPort, FRAME_SIZE};
use crate::worker::BATCH;

/// Which XDP attach mode to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native (driver) mode if the driver has it, else generic.
    #[default]
    Auto,
    Native,
    Generic,
}

/// How to bind the socket to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy if the driver has it, else copy.
    #[default]
    Auto,
    ZeroCopy,
    Copy,
}

/// Socket options for every port.
#[derive(Clone, Copy, Debug)]
pub struct PortOptions {
    pub xdp: XdpMode,
    pub bind: BindMode,
    /// Ask for busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
    /// `SO_BUSY_POLL_BUDGET`); used when the kernel accepts it.
    pub busy_poll: bool,
    /// Descriptors in each RX, TX, fill and completion ring (a power of two).
    pub ring_size: u32,
}

impl Default for PortOptions {
    fn default() -> Self {
        PortOptions {
            xdp: XdpMode::Auto,
            bind: BindMode::Auto,
            busy_poll: false,
            ring_size: 2048,
        }
    }
}

/// What a socket got at setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub interface: String,
    pub queue: u32,
    /// `native` or `generic`.
    pub xdp: &'static str,
    /// `zero-copy` or `copy`.
    pub bind: &'static str,
    pub busy_poll: bool,
}

impl fmt::Display for PortInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} queue {}: xdp {}, {}, busy-poll {}",
            self.interface,
            self.queue,
            self.xdp,
            self.bind,
            if self.busy_poll { "on" } else { "off" }
        )
    }
}

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {0:?}: no such interface")]
    NoInterface(String),
    #[error("interface {0:?}: the name is not a valid interface name")]
    BadName(String),
    #[error("UMEM of {frames} frames: {reason}")]
    Umem { frames: u32, reason: String },
    #[error("interface {interface} queue {queue}: cannot open an AF_XDP socket ({tried}): {reason}")]
    Socket {
        interface: String,
        queue: u32,
        tried: String,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Keeps libbpf and libxdp from printing to stderr: their failures reach us as
/// error codes, which the errors above name; their informational lines (for
/// example that no bpffs is mounted, so no multi-program dispatcher is used)
/// are not the appliance's log.
pub(super) fn quiet_libraries() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    unsafe extern "C" fn silent_xdp(
        _: libxdp_sys::libxdp_print_level,
        _: *const libc::c_char,
        _: *mut libxdp_sys::__va_list_tag,
    ) -> libc::c_int {
        0
    }
    unsafe extern "C" fn silent_bpf(
        _: libbpf_sys::libbpf_print_level,
        _: *const libc::c_char,
        _: *mut libbpf_sys::__va_list_tag,
    ) -> libc::c_int {
        0
    }
    ONCE.call_once(|| {
        // SAFETY: both setters only store the function pointer.
        unsafe {
            libxdp_sys::libxdp_set_print(Some(silent_xdp));
            libbpf_sys::libbpf_set_print(Some(silent_bpf));
        }
    });
}

/// Whether the socket is bound in zero-copy mode (asked of the kernel, since
/// a socket sharing a UMEM inherits the mode of the UMEM's first socket).
pub(super) fn is_zero_copy(fd: i32) -> bool {
    let mut flags: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: XDP_OPTIONS writes one u32 into `flags`, bounded by `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libxdp_sys::XDP_OPTIONS as i32,
            (&mut flags as *mut u32).cast(),
            &mut len,
        )
    };
    rc == 0 && flags & libxdp_sys::XDP_OPTIONS_ZEROCOPY != 0
}

fn queue_size(n: u32) -> Result<QueueSize, XdpError> {
    QueueSize::new(n).map_err(|_| XdpError::Config(format!("ring_size {n}: must be a power of two")))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Opens one socket on `name`/`queue`, trying the modes `opts` allows from the
/// fastest down.
fn open_socket(
    umem: &Umem,
    name: &str,
    queue: u32,
    opts: &PortOptions,
    ring: QueueSize,
) -> Result<XskPort, XdpError> {
    let xdp_modes: &[(XdpFlags, &'static str)] = match opts.xdp {
        XdpMode::Auto => &[
            (XdpFlags::XDP_FLAGS_DRV_MODE, "native"),
            (XdpFlags::XDP_FLAGS_SKB_MODE, "generic"),
        ],
        XdpMode::Native => &[(XdpFlags::XDP_FLAGS_DRV_MODE, "native")],
        XdpMode::Generic => &[(XdpFlags::XDP_FLAGS_SKB_MODE, "generic")],
    };
    let bind_modes: &[(BindFlags, &'static str)] = match opts.bind {
        BindMode::Auto => &[
            (BindFlags::XDP_ZEROCOPY, "zero-copy"),
            (BindFlags::XDP_COPY, "copy"),
        ],
        BindMode::ZeroCopy => &[(BindFlags::XDP_ZEROCOPY, "zero-copy")],
        BindMode::Copy => &[(BindFlags::XDP_COPY, "copy")],
    };
    let iface: Interface = CString::new(name)
        .map(Interface::new)
        .map_err(|_| XdpError::BadName(name.to_owned()))?;
    let mut tried = Vec::new();
    let mut last = String::new();
    for &(xdp_flags, xdp_name) in xdp_modes {
        for &(bind_flags, bind_name) in bind_modes {
            let config = SocketConfig::builder()
                .rx_queue_size(ring)
                .tx_queue_size(ring)
                .libxdp_flags(LibxdpFlags::empty())
                .xdp_flags(xdp_flags)
                .bind_flags(bind_flags | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // A queue released by a socket closed a moment ago stays busy until
            // the kernel's deferred cleanup has run: retry EBUSY for a second.
            let mut attempt = 0;
            let created = loop {
                // SAFETY: the UMEM outlives the socket (the socket keeps a handle on it).
                let r = unsafe { Socket::new(config, umem, &iface, queue) };
                let busy = matches!(&r, Err(e) if std::error::Error::source(e)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .and_then(io::Error::raw_os_error) == Some(libc::EBUSY));
                if !busy || attempt == 20 {
                    break r;
                }
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            match created {
                Ok((tx, rx, Some((fill, comp)))) => {
                    let fd = rx.fd().as_raw_fd();
                    let busy_poll = opts.busy_poll && set_busy_poll(fd);
                    let xdp_name = attached_program(name).map_or(xdp_name, |(_, mode)| mode);
                    let bind_name = if is_zero_copy(fd) { "zero-copy" } else { "copy" };
                    if opts.bind == BindMode::ZeroCopy && bind_name != "zero-copy" {
                        return Err(XdpError::Socket {
                            interface: name.to_owned(),
                            queue,
                            tried: format!("{xdp_name} zero-copy"),
                            reason: "the kernel bound the socket in copy mode".into(),
                        });
                    }
                    return Ok(XskPort {
                        info: PortInfo {
                            interface: name.to_owned(),
                            queue,
                            xdp: xdp_name,
                            bind: bind_name,
                            busy_poll,
                        },
                        rx,
                        tx,
                        fill,
                        comp,
                        in_fill: 0,
                        in_tx: 0,
                        tx_ring_full: 0,
                        unkicked: 0,
                        fd,
                    });
                }
                Ok((_, _, None)) => {
                    return Err(XdpError::Socket {
                        interface: name.to_owned(),
                        queue,
                        tried: format!("{xdp_name} {bind_name}"),
                        reason: "the socket shares an existing fill ring; each port needs its own".into(),
                    })
                }
                Err(e) => {
                    tried.push(format!("{xdp_name} {bind_name}"));
                    last = error_chain(&e);
                }
            }
        }
    }
    Err(XdpError::Socket {
        interface: name.to_owned(),
        queue,
        tried: format!("tried {}", tried.join(", ")),
        reason: last,
    })
}

/// Turns on busy polling for the socket; `false` if the kernel refused.
fn set_busy_poll(fd: i32) -> bool {
    const SO_PREFER_BUSY_POLL: libc::c_int = 69;
    const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
    let set = |opt: libc::c_int, value: libc::c_int| {
        // SAFETY: a plain integer socket option on our own socket.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    set(SO_PREFER_BUSY_POLL, 1)
        && set(libc::SO_BUSY_POLL, 20)
        && set(SO_BUSY_POLL_BUDGET, BATCH as libc::c_int)
}

impl Io {
    /// Creates a UMEM of `frames` frames and opens one socket per interface on
    /// `queue`, all sharing it. The interfaces are the bridge's sides in order.
    ///
    /// Opens are serialised within the process: two sockets opened at once
    /// on one interface race on attaching libxdp's dispatcher program (the
    /// loser gets EBUSY).
    pub fn open(interfaces: &[&str], queue: u32, frames: u32, opts: &PortOptions) -> Result<Io, XdpError> {
        static OPENING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = OPENING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        quiet_libraries();
        for name in interfaces {
            if if_index(name).is_none() {
                return Err(XdpError::NoInterface((*name).to_owned()));
            }
        }
        let ring = queue_size(opts.ring_size)?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| XdpError::Config(e.to_string()))?)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| XdpError::Config(e.to_string()))?;
        let count =
            NonZeroU32::new(frames).ok_or_else(|| XdpError::Config("frames: must be positive".into()))?;
        let (umem, descs) = Umem::new(umem_config, count, false).map_err(|e| XdpError::Umem {
            frames,
            reason: error_chain(&e),
        })?;
        let mut io = Io {
            owner: vec![Owner::Free; descs.len()],
            total: frames,
            free: descs,
            ports: Vec::with_capacity(interfaces.len()),
            audit: Audit::default(),
            umem,
        };
        for name in interfaces {
            let port = open_socket(&io.umem, name, queue, opts, ring)?;
            io.ports.push(port);
            // The program steers frames to the socket from the moment it is
            // created; give it fill frames at once, or the kernel drops the
            // first arrivals for want of them.
            io.refill(io.ports.len() - 1, 0);
        }
        Ok(io)
    }
}
