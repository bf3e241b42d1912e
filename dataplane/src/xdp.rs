//! AF_XDP ports: one socket per (interface, queue), every socket of a worker
//! bound to the worker's one UMEM, so that a frame received on one port leaves
//! on the other by handing its descriptor to the other socket's TX ring, with
//! no copy in userspace.
//!
//! Frame ownership. Every UMEM frame is, at any moment, in exactly one place:
//! the worker's free list, a fill ring (the kernel will receive into it), the
//! worker's hands (received, being decided) or a TX ring (the kernel is sending
//! it, until it comes back on that socket's completion ring). [`Io`] counts the
//! frames in each place and keeps one owner byte per frame, checked on every
//! hand-over: a frame the kernel returns that it was not given is counted in
//! [`Io::audit`] and never reused, so a driver bug cannot make two owners.
//!
//! Setup tries the fastest mode first and falls back: native XDP, then generic
//! (SKB) XDP; zero-copy bind, then copy. [`PortInfo`] records what each socket got.
#![allow(
    unsafe_code,
    reason = "AF_XDP rings and UMEM are shared with the kernel; every block states why it is sound"
)]

use std::ffi::CString;
use std::fmt;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
/// A UMEM frame descriptor (address and length), as the rings carry it.
pub use xsk_rs::FrameDesc;
use xsk_rs::{CompQueue, FillQueue, RxQueue, Socket, TxQueue, Umem};

use crate::worker::BATCH;

/// The UMEM chunk size: one frame per 2 KiB chunk (the kernel reserves 256
/// bytes of headroom, leaving 1792 for the frame).
pub const FRAME_SIZE: u32 = 2048;

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

/// The interface's index, or `None` when there is no such interface.
pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Keeps libbpf and libxdp from printing to stderr: their failures reach us as
/// error codes, which the errors above name; their informational lines (for
/// example that no bpffs is mounted, so no multi-program dispatcher is used)
/// are not the appliance's log.
fn quiet_libraries() {
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

/// Whether the socket is bound in zero-copy mode (asked of the kernel, since
/// a socket sharing a UMEM inherits the mode of the UMEM's first socket).
fn is_zero_copy(fd: i32) -> bool {
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

/// One AF_XDP socket: its four rings and what is in flight on them.
pub struct XskPort {
    info: PortInfo,
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    /// Frames on the fill ring or received but not yet consumed.
    in_fill: u32,
    /// Frames on the TX ring or sent but not yet completed.
    in_tx: u32,
    /// Frames dropped because the TX ring was full.
    tx_ring_full: u64,
    /// Frames put on the TX ring since the last kick.
    unkicked: u32,
    fd: i32,
}

/// Frames the kernel sends per `sendto` in copy mode (its `TX_BATCH_SIZE`);
/// zero-copy drivers send the whole ring on one wake-up.
const COPY_TX_PER_KICK: u32 = 32;

impl fmt::Debug for XskPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskPort")
            .field("info", &self.info)
            .field("in_fill", &self.in_fill)
            .field("in_tx", &self.in_tx)
            .finish_non_exhaustive()
    }
}

impl XskPort {
    pub fn info(&self) -> &PortInfo {
        &self.info
    }
    /// The socket's file descriptor (to wait on it).
    pub fn fd(&self) -> i32 {
        self.fd
    }
    /// Asks the kernel to send what waits on the TX ring, when the ring says
    /// it needs asking (copy mode always does).
    ///
    /// In copy mode one `sendto` sends at most [`COPY_TX_PER_KICK`] frames, so
    /// a kick after a burst asks once per that many frames queued since the
    /// last kick: one ask per burst would drain a full burst of 64 at half
    /// the rate it arrives, and a worker that fell behind once would stay
    /// behind with a full TX ring.
    fn kick(&mut self) {
        if self.in_tx > 0 && self.tx.needs_wakeup() {
            let asks = if self.info.bind == "copy" {
                self.unkicked.div_ceil(COPY_TX_PER_KICK).max(1)
            } else {
                1
            };
            for _ in 0..asks {
                // Errors here are transient (ENOBUFS, EAGAIN, EBUSY) and are
                // retried at the next kick; xsk-rs already ignores them.
                let _ = self.tx.wakeup();
            }
        }
        self.unkicked = 0;
    }
}

/// Where a frame is (one byte per frame, see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Owner {
    Free,
    Fill,
    Worker,
    Tx,
    /// Returned by the kernel when it did not own it: quarantined.
    Lost,
}

/// Ownership violations seen (each should be impossible).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Frames received that were not on a fill ring.
    pub rx_not_filled: u64,
    /// Frames completed that were not on a TX ring.
    pub completed_not_sent: u64,
}

/// Where every frame of the pool is, for the shutdown check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolReport {
    pub total: u32,
    pub free: u32,
    pub in_fill: u32,
    pub in_tx: u32,
    /// Frames on the free list twice (must be 0).
    pub duplicates: u32,
    pub audit: Audit,
    /// Frames the worker forwarded that found the TX ring full (dropped).
    pub tx_ring_full: u64,
    /// Frames the kernel dropped before the worker saw them: RX ring full, no
    /// fill frame, or too long for a frame (each socket's `XDP_STATISTICS`).
    pub kernel_dropped: u64,
}

impl PoolReport {
    /// Every frame accounted for exactly once, and no violation seen.
    pub fn whole(&self) -> bool {
        self.free + self.in_fill + self.in_tx == self.total
            && self.duplicates == 0
            && self.audit == Audit::default()
    }
}

/// A worker's UMEM, its free frames and its ports (index = bridge side).
///
/// Drop it in the network namespace it was opened in: closing the last socket
/// of an interface detaches the XDP program by interface index, which is
/// resolved in the namespace of the thread that drops it. (A process that runs
/// in one namespace, as `rampart run` does, needs no care.)
pub struct Io {
    umem: Umem,
    free: Vec<FrameDesc>,
    owner: Vec<Owner>,
    total: u32,
    ports: Vec<XskPort>,
    audit: Audit,
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("free", &self.free.len())
            .field("total", &self.total)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

fn queue_size(n: u32) -> Result<QueueSize, XdpError> {
    QueueSize::new(n).map_err(|_| XdpError::Config(format!("ring_size {n}: must be a power of two")))
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

    pub fn ports(&self) -> &[XskPort] {
        &self.ports
    }

    fn index(desc: &FrameDesc) -> usize {
        desc.addr() / FRAME_SIZE as usize
    }

    /// Tops up port `p`'s fill ring from the free list, keeping at least
    /// `reserve` frames free for the other ports.
    pub fn refill(&mut self, p: usize, reserve: usize) {
        let spare = self.free.len().saturating_sub(reserve);
        let port = &mut self.ports[p];
        let room = port.fill.nb_free(spare.min(u32::MAX as usize) as u32) as usize;
        let n = room.min(spare);
        if n == 0 {
            return;
        }
        let start = self.free.len() - n;
        // SAFETY: the frames come from the free list, so neither the kernel nor
        // the worker holds them, and they belong to this UMEM.
        let produced = unsafe { port.fill.produce(&self.free[start..]) };
        for desc in &self.free[start..start + produced] {
            self.owner[Self::index(desc)] = Owner::Fill;
        }
        port.in_fill += produced as u32;
        // `produce` is all or nothing, and `n` fits.
        if produced == n {
            self.free.truncate(start);
        }
    }

    /// Receives up to `descs.len()` frames from port `p`; returns how many.
    pub fn receive(&mut self, p: usize, descs: &mut [FrameDesc]) -> usize {
        let port = &mut self.ports[p];
        // SAFETY: the descriptors are overwritten with frames of this UMEM.
        let n = unsafe { port.rx.consume(descs) };
        port.in_fill -= n as u32;
        let mut kept = 0;
        for i in 0..n {
            let desc = descs[i];
            let owner = &mut self.owner[Self::index(&desc)];
            if *owner == Owner::Fill {
                *owner = Owner::Worker;
                descs[kept] = desc;
                kept += 1;
            } else {
                *owner = Owner::Lost;
                self.audit.rx_not_filled += 1;
            }
        }
        kept
    }

    /// The received bytes of a frame the worker holds.
    pub fn data(&self, desc: &FrameDesc) -> &[u8] {
        // SAFETY: the frame is held by the worker (received, not yet handed
        // back), so the kernel does not write it while this borrow lives.
        unsafe { self.umem.data(desc) }.contents()
    }

    /// Hands frames the worker holds to port `p`'s TX ring; frames that do not
    /// fit go back to the free list (counted, see [`PoolReport`]). Then asks
    /// the kernel to send whatever waits on the ring, also when nothing new
    /// fitted (a send it refused a moment ago leaves frames there). Returns how
    /// many were queued.
    pub fn transmit(&mut self, p: usize, descs: &[FrameDesc]) -> usize {
        let port = &mut self.ports[p];
        let room = port.tx.nb_free(descs.len() as u32) as usize;
        let n = room.min(descs.len());
        // SAFETY: the worker holds these frames; they belong to this UMEM.
        let sent = if n > 0 {
            unsafe { port.tx.produce(&descs[..n]) }
        } else {
            0
        };
        port.in_tx += sent as u32;
        port.unkicked += sent as u32;
        port.tx_ring_full += (descs.len() - sent) as u64;
        for desc in &descs[..sent] {
            self.owner[Self::index(desc)] = Owner::Tx;
        }
        for desc in &descs[sent..] {
            self.owner[Self::index(desc)] = Owner::Free;
            self.free.push(*desc);
        }
        port.kick();
        sent
    }

    /// Takes a free frame for the worker to fill and transmit (a generator's
    /// path), with `bytes` written into it; `None` when none is free.
    pub fn alloc(&mut self, bytes: &[u8]) -> Option<FrameDesc> {
        use std::io::Write;
        let mut desc = self.free.pop()?;
        // SAFETY: the frame came off the free list, so the worker alone holds it.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        let mut cursor = data.cursor();
        cursor.set_pos(0);
        if cursor.write_all(bytes).is_err() {
            self.free.push(desc);
            return None;
        }
        self.owner[Self::index(&desc)] = Owner::Worker;
        Some(desc)
    }

    /// Changes, in place, the bytes of a frame the worker holds (after
    /// [`Io::alloc`], before transmitting it).
    pub fn modify<R>(&mut self, desc: &mut FrameDesc, f: impl FnOnce(&mut [u8]) -> R) -> R {
        assert_eq!(
            self.owner[Self::index(desc)],
            Owner::Worker,
            "only a frame the worker holds"
        );
        // SAFETY: the worker holds the frame (on no ring), so the kernel does
        // not touch it while it is changed.
        let mut data = unsafe { self.umem.data_mut(desc) };
        f(data.contents_mut())
    }

    /// Gives frames the worker holds back to the free list (dropped frames).
    pub fn release(&mut self, descs: &[FrameDesc]) {
        for desc in descs {
            self.owner[Self::index(desc)] = Owner::Free;
            self.free.push(*desc);
        }
    }

    /// Moves completed transmissions of every port back to the free list.
    pub fn reap(&mut self) {
        let mut done = [FrameDesc::default(); BATCH];
        for port in &mut self.ports {
            if port.in_tx == 0 {
                continue;
            }
            loop {
                // SAFETY: the descriptors are overwritten with frames of this UMEM.
                let n = unsafe { port.comp.consume(&mut done) };
                port.in_tx -= n as u32;
                for desc in &done[..n] {
                    let owner = &mut self.owner[Self::index(desc)];
                    if *owner == Owner::Tx {
                        *owner = Owner::Free;
                        self.free.push(*desc);
                    } else {
                        *owner = Owner::Lost;
                        self.audit.completed_not_sent += 1;
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }

    /// Kicks TX on every port with frames still queued (copy mode sends only
    /// when asked).
    pub fn kick(&mut self) {
        for port in &mut self.ports {
            port.kick();
        }
    }

    /// Drives busy polling or a pending fill-ring wake-up on port `p` (one
    /// non-blocking `recvfrom`, only when the ring asks for it or busy polling
    /// is on).
    pub fn poke_rx(&mut self, p: usize) {
        let port = &self.ports[p];
        if port.info.busy_poll || port.fill.needs_wakeup() {
            // SAFETY: a zero-length, non-blocking receive on our own socket.
            unsafe {
                libc::recvfrom(
                    port.fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
    }

    /// Sleeps until a port has received frames, `also` (if given) is
    /// readable, or `timeout_ms` passes.
    pub fn wait(&mut self, timeout_ms: i32, also: Option<std::os::fd::BorrowedFd<'_>>) {
        use std::os::fd::AsRawFd;
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; 5];
        let mut n = self.ports.len().min(fds.len() - 1);
        for (fd, port) in fds.iter_mut().zip(&self.ports) {
            *fd = libc::pollfd {
                fd: port.fd,
                events: libc::POLLIN,
                revents: 0,
            };
        }
        if let Some(extra) = also {
            fds[n] = libc::pollfd {
                fd: extra.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            n += 1;
        }
        // SAFETY: `fds[..n]` is a valid array of pollfd for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    }

    /// Forwarded frames dropped so far because a TX ring was full.
    pub fn tx_ring_full(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_ring_full).sum()
    }

    /// Frames still on TX rings.
    pub fn in_tx(&self) -> u32 {
        self.ports.iter().map(|p| p.in_tx).sum()
    }

    /// Where every frame is now.
    pub fn report(&self) -> PoolReport {
        let mut seen = vec![false; self.owner.len()];
        let mut duplicates = 0;
        for desc in &self.free {
            let i = Self::index(desc);
            if std::mem::replace(&mut seen[i], true) {
                duplicates += 1;
            }
        }
        PoolReport {
            total: self.total,
            free: self.free.len() as u32,
            in_fill: self.ports.iter().map(|p| p.in_fill).sum(),
            in_tx: self.in_tx(),
            duplicates,
            audit: self.audit,
            tx_ring_full: self.ports.iter().map(|p| p.tx_ring_full).sum(),
            kernel_dropped: self
                .ports
                .iter()
                .filter_map(|p| p.rx.fd().xdp_statistics().ok())
                .map(|s| s.rx_dropped() + s.rx_ring_full())
                .sum(),
        }
    }
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
