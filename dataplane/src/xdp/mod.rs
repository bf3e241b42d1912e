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
//!
//! - this file: [`Io`] and [`XskPort`], the ring path a worker runs per burst
//!   (refill, receive, transmit, reap, kick) and the frame accounting;
//! - [`setup`]: opening the UMEM and the sockets, with the fallbacks;
//! - [`netdev`]: interface queries and settings (index, attached program,
//!   promiscuous mode, queue count, socket statistics).
#![allow(
    unsafe_code,
    reason = "AF_XDP rings and UMEM are shared with the kernel; every block states why it is sound"
)]

use std::fmt;

/// A UMEM frame descriptor (address and length), as the rings carry it.
pub use xsk_rs::FrameDesc;
use xsk_rs::{CompQueue, FillQueue, RxQueue, TxQueue, Umem};

use crate::worker::BATCH;

pub mod netdev;
pub mod setup;

pub use netdev::{
    attached_program, detach_any, if_index, rx_queues, set_promiscuous, socket_stats, SocketStats,
};
pub use setup::{BindMode, PortInfo, PortOptions, XdpError, XdpMode};

/// The UMEM chunk size: one frame per 2 KiB chunk (the kernel reserves 256
/// bytes of headroom, leaving 1792 for the frame).
pub const FRAME_SIZE: u32 = 2048;

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

impl Io {
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
