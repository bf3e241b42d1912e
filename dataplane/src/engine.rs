//! Poll-mode workers: each worker thread, pinned to its core, owns an [`Io`]
//! (its UMEM and one AF_XDP socket per port on its queue) and a [`Stage`] (the
//! policy pipeline, or a plain pass-through for measuring the I/O ceiling), and
//! loops: refill, receive a burst per port, decide it, hand forwarded frames to
//! the other port's TX ring, return dropped ones to the free list, reap
//! completions. With several workers, frames whose flow another worker owns
//! are passed to it first ([`crate::handoff`]).
//!
//! The snapshot is read through `arc-swap` once per burst ([`Pipeline`]), so a
//! snapshot the control thread publishes is used from the next burst on.
//!
//! Idle policy ([`Idle`]): `busy` polls without pause; `adaptive` spins for
//! [`ADAPTIVE_SPIN`] after the last frame, then sleeps in `poll(2)` on the
//! sockets, which the kernel wakes as soon as a frame arrives. How soon the
//! thread then runs depends on how deep its core went idle; the daemon
//! bounds that with a CPU latency request (`rampart_control::wake`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam::channel::{self, Receiver, RecvTimeoutError};
use xsk_rs::FrameDesc;

use crate::handoff::{Doorbell, Handoff};
use crate::reason::DropReason;
use crate::snapshot::Snapshot;
use crate::stats::Counter;
use crate::worker::{Fate, Side, Worker, BATCH};
use crate::xdp::{Io, PoolReport};

/// How long an adaptive worker keeps spinning after its last frame.
pub const ADAPTIVE_SPIN: Duration = Duration::from_micros(200);
/// The longest an idle worker sleeps before it checks for stop and sweeps.
const IDLE_WAIT_MS: i32 = 50;
/// How often a busy, idle worker runs housekeeping.
const HOUSEKEEPING_NS: u64 = 1_000_000;
/// How long a stopping worker waits for frames still being sent.
const DRAIN: Duration = Duration::from_millis(500);

/// What a worker does when no frame arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Idle {
    /// Poll without pause (a dedicated core).
    Busy,
    /// Spin briefly, then sleep until a frame arrives.
    #[default]
    Adaptive,
}

/// What runs between receive and transmit.
pub trait Stage {
    /// Decides `frames`, received on `from` at `now` (monotonic nanoseconds):
    /// `out[i]` for `frames[i]`.
    fn process(&mut self, now: u64, from: Side, frames: &[&[u8]], out: &mut [Fate]);
    /// Called when idle (expiry sweeps).
    fn idle(&mut self, _now: u64) {}
}

impl<S: Stage + ?Sized> Stage for Box<S> {
    fn process(&mut self, now: u64, from: Side, frames: &[&[u8]], out: &mut [Fate]) {
        (**self).process(now, from, frames, out);
    }
    fn idle(&mut self, now: u64) {
        (**self).idle(now);
    }
}

/// The security-group pipeline: a [`Worker`] deciding each burst against the
/// snapshot current when the burst arrived.
#[derive(Debug)]
pub struct Pipeline {
    pub worker: Worker,
    pub snapshots: Arc<ArcSwap<Snapshot>>,
}

impl Stage for Pipeline {
    fn process(&mut self, now: u64, from: Side, frames: &[&[u8]], out: &mut [Fate]) {
        let snap = self.snapshots.load();
        self.worker.process_batch(&snap, now, from, frames, out);
    }
    fn idle(&mut self, now: u64) {
        self.worker.housekeeping(now);
        // An idle worker still reports the generation it would run, so a
        // control plane waiting for every worker to adopt a snapshot is not
        // kept waiting by a worker that sees no traffic.
        let generation = self.snapshots.load().generation;
        self.worker.counters().generation.set(generation);
    }
}

/// What a worker's poll loop reports while it runs (single writer: the
/// worker; read by the metrics collector at scrape time).
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Time spent in loop rounds that had frames to handle.
    pub busy_ns: Counter,
    /// Forwarded frames dropped because a TX ring was full.
    pub tx_ring_full: Counter,
    /// Sleeps in `poll(2)` (adaptive idle).
    pub sleeps: Counter,
}

/// What connects a worker's loop to the others and to the control thread.
#[derive(Debug, Default)]
pub struct Links<'a> {
    /// The hand-off, when there are several workers.
    pub handoff: Option<&'a mut Handoff>,
    /// Rung to wake the worker from an adaptive sleep.
    pub bell: Option<&'a Doorbell>,
    /// Where the loop reports its busy time and ring losses.
    pub stats: Option<&'a LoopStats>,
}

const SIDES: [Side; 2] = [Side::A, Side::B];

/// Runs the poll loop until `stop` is set, then waits (briefly) for frames
/// still on TX rings and reports where every frame of the pool is.
///
/// With a [`Handoff`] (several workers), frames whose flow another worker owns
/// are passed to it instead of decided here, and frames passed to this worker
/// are decided as if received on their port.
pub fn poll_loop<S: Stage>(
    io: &mut Io,
    stage: &mut S,
    idle: Idle,
    stop: &AtomicBool,
    links: Links<'_>,
) -> PoolReport {
    let Links {
        mut handoff,
        bell,
        stats,
    } = links;
    let clock = Instant::now();
    let now = || clock.elapsed().as_nanos() as u64;
    let mut descs = [FrameDesc::default(); BATCH];
    let mut scratch = Scratch::default();
    let mut idle_since: Option<u64> = None;
    let mut last_housekeeping = 0;
    while !stop.load(Ordering::Relaxed) {
        let round = now();
        let mut received = 0;
        for (p, &side) in SIDES.iter().enumerate().take(io.ports().len()) {
            io.refill(p, 0);
            let mut n = io.receive(p, &mut descs);
            if n == 0 {
                io.poke_rx(p);
                continue;
            }
            received += n;
            if let Some(h) = handoff.as_deref_mut() {
                n = pass_on(io, h, side, &mut descs[..n]);
            }
            decide(io, stage, now(), side, &descs[..n], &mut scratch);
        }
        if let Some(h) = handoff.as_deref_mut() {
            let mut passed = [[FrameDesc::default(); BATCH]; 2];
            let mut counts = [0usize; 2];
            received += h.receive(|side, bytes| match io.alloc(bytes) {
                Some(desc) => {
                    let s = side.index();
                    passed[s][counts[s]] = desc;
                    counts[s] += 1;
                    true
                }
                None => false,
            });
            for side in SIDES {
                let s = side.index();
                decide(io, stage, now(), side, &passed[s][..counts[s]], &mut scratch);
            }
            h.flush();
        }
        io.reap();
        if received > 0 {
            if let Some(st) = stats {
                st.busy_ns.add(now().saturating_sub(round));
                st.tx_ring_full.set(io.tx_ring_full());
            }
            idle_since = None;
            continue;
        }
        io.kick();
        let t = now();
        match idle {
            Idle::Busy => {
                if t.saturating_sub(last_housekeeping) > HOUSEKEEPING_NS {
                    stage.idle(t);
                    last_housekeeping = t;
                }
            }
            Idle::Adaptive => {
                let since = *idle_since.get_or_insert(t);
                if t.saturating_sub(since) > ADAPTIVE_SPIN.as_nanos() as u64 {
                    // Announce the sleep, then look once more: the idle
                    // housekeeping adopts a snapshot published before the
                    // announcement, and parcels passed before it are seen;
                    // anything later rings the doorbell.
                    if let Some(b) = bell {
                        b.announce();
                    }
                    stage.idle(t);
                    if !handoff.as_deref().is_some_and(Handoff::has_parcels) {
                        // Until a socket has a frame, the doorbell rings, or
                        // the timeout (to look at `stop` and sweep again).
                        io.wait(IDLE_WAIT_MS, bell.map(Doorbell::fd));
                        if let Some(st) = stats {
                            st.sleeps.add(1);
                        }
                    }
                    if let Some(b) = bell {
                        b.awake();
                    }
                    idle_since = None;
                }
            }
        }
    }
    let deadline = Instant::now() + DRAIN;
    while io.in_tx() > 0 && Instant::now() < deadline {
        io.kick();
        io.reap();
        std::thread::yield_now();
    }
    io.report()
}

/// Per-burst scratch space of [`decide`].
struct Scratch {
    out: [Fate; BATCH],
    to: [[FrameDesc; BATCH]; 2],
    dropped: [FrameDesc; BATCH],
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            out: [Fate::Drop(DropReason::Denied); BATCH],
            to: [[FrameDesc::default(); BATCH]; 2],
            dropped: [FrameDesc::default(); BATCH],
        }
    }
}

/// Passes the frames of `descs` that another worker owns to it (their UMEM
/// frames go back to the free list) and keeps the rest at the front of
/// `descs`; returns how many are kept.
fn pass_on(io: &mut Io, h: &mut Handoff, side: Side, descs: &mut [FrameDesc]) -> usize {
    let mut kept = 0;
    let mut gone = [FrameDesc::default(); BATCH];
    let mut g = 0;
    for i in 0..descs.len() {
        let desc = descs[i];
        let frame = io.data(&desc);
        match h.elsewhere(frame) {
            Some(owner) => {
                // Passed or (mailbox full, counted) dropped: either way the
                // frame is done with here.
                h.send(owner, side, frame);
                gone[g] = desc;
                g += 1;
            }
            None => {
                descs[kept] = desc;
                kept += 1;
            }
        }
    }
    io.release(&gone[..g]);
    kept
}

/// Decides the frames of `descs` (all from `side`), sends the forwarded ones
/// to their port's TX ring and returns the dropped ones to the free list.
fn decide<S: Stage>(io: &mut Io, stage: &mut S, now: u64, side: Side, descs: &[FrameDesc], s: &mut Scratch) {
    let n = descs.len();
    if n == 0 {
        return;
    }
    {
        let frames: [&[u8]; BATCH] = std::array::from_fn(|i| if i < n { io.data(&descs[i]) } else { &[] });
        stage.process(now, side, &frames[..n], &mut s.out[..n]);
    }
    let mut counts = [0usize; 2];
    let mut d = 0;
    for (desc, action) in descs.iter().zip(&s.out[..n]) {
        match action {
            Fate::Forward(to_side) => {
                let t = to_side.index();
                s.to[t][counts[t]] = *desc;
                counts[t] += 1;
            }
            Fate::Drop(_) => {
                s.dropped[d] = *desc;
                d += 1;
            }
        }
    }
    io.release(&s.dropped[..d]);
    for (t, count) in counts.iter().enumerate() {
        if *count > 0 && t < io.ports().len() {
            io.transmit(t, &s.to[t][..*count]);
        } else if *count > 0 {
            io.release(&s.to[t][..*count]);
        }
    }
}

/// One worker to start: its sockets, its stage, and the core to pin it to.
#[derive(Debug)]
pub struct WorkerSpec<S> {
    pub io: Io,
    pub stage: S,
    pub core: Option<usize>,
    /// This worker's end of the hand-off when there are several workers.
    pub handoff: Option<Handoff>,
    /// Rung to wake the worker from an adaptive sleep (by the hand-off and
    /// by the control thread after publishing a snapshot).
    pub bell: Option<Arc<Doorbell>>,
    /// Where the worker reports its busy time and ring losses.
    pub stats: Option<Arc<LoopStats>>,
}

/// How a worker ended.
#[derive(Debug)]
pub struct WorkerExit<S> {
    pub index: usize,
    /// `Err` with the panic message if the worker panicked.
    pub result: Result<(PoolReport, S), String>,
}

/// Running workers.
pub struct Workers<S> {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<(PoolReport, S)>>,
    exits: Receiver<usize>,
}

impl<S> std::fmt::Debug for Workers<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.handles.len())
            .finish_non_exhaustive()
    }
}

/// Tells the engine that a worker thread ended, however it ended.
struct ExitNotice(usize, channel::Sender<usize>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

impl<S: Stage + Send + 'static> Workers<S> {
    /// Starts one thread per worker, each pinned to its core when one is given
    /// (the caller checks the core list against the machine's cores first).
    pub fn start(workers: Vec<WorkerSpec<S>>, idle: Idle) -> std::io::Result<Workers<S>> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, exits) = channel::unbounded();
        let mut handles = Vec::with_capacity(workers.len());
        for (index, spec) in workers.into_iter().enumerate() {
            let stop = Arc::clone(&stop);
            let notice = ExitNotice(index, tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("rampart-worker-{index}"))
                .spawn(move || {
                    let _notice = notice;
                    let WorkerSpec {
                        mut io,
                        mut stage,
                        core,
                        mut handoff,
                        bell,
                        stats,
                    } = spec;
                    if let Some(core) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: core });
                    }
                    let links = Links {
                        handoff: handoff.as_mut(),
                        bell: bell.as_deref(),
                        stats: stats.as_deref(),
                    };
                    let report = poll_loop(&mut io, &mut stage, idle, &stop, links);
                    (report, stage)
                })?;
            handles.push(handle);
        }
        Ok(Workers { stop, handles, exits })
    }

    /// Waits until `term` is set or any worker ends (a panic, say), then stops
    /// every worker and joins them all. Their sockets close as they end, which
    /// detaches the XDP programs.
    pub fn wait(self, term: &AtomicBool) -> Vec<WorkerExit<S>> {
        loop {
            if term.load(Ordering::Relaxed) {
                break;
            }
            match self.exits.recv_timeout(Duration::from_millis(50)) {
                Ok(_) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .enumerate()
            .map(|(index, h)| WorkerExit {
                index,
                result: h.join().map_err(|panic| panic_message(&*panic)),
            })
            .collect()
    }
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
