//! `rampart run`: the appliance.
//!
//! Threads: the main thread sets up and then waits for a stop signal or a
//! worker's end; the control thread owns the model and the snapshot compiler
//! and publishes snapshots through an `ArcSwap` (SIGHUP re-reads the config
//! file); one worker thread per queue polls the AF_XDP sockets of both ports.
//! With several workers, a frame that arrives on a queue whose worker does not
//! own its flow is passed to the owner (`rampart_dataplane::handoff`), so both
//! directions of a connection meet one connection table.
//! Workers never wait for the control thread: they load the current snapshot
//! once per burst.
//!
//! Start-up order: check everything that can be checked before touching an
//! interface (config, ports, queues, cores), then remove a stale XDP program,
//! set promiscuous mode, open the sockets, start the workers. Any failure
//! undoes what was done (sockets close and detach their programs as they are
//! dropped; promiscuous mode is restored).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rampart_dataplane::engine::{Idle, LoopStats, Pipeline, WorkerExit, WorkerSpec, Workers};
use rampart_dataplane::handoff::{Doorbell, Handoff, HandoffView};
use rampart_dataplane::snapshot::Snapshot;
use rampart_dataplane::stats::{Counters, Totals};
use rampart_dataplane::worker::{Config as WorkerConfig, Worker};
use rampart_dataplane::xdp::{self, BindMode, Io, PortOptions, XdpMode};

use crate::appliance::{Appliance, BindModeSetting, IdleSetting, WakeLatencySetting, XdpModeSetting};
use crate::wake::{self, WakeLatency};

/// Parcels in each worker's hand-off mailbox (2 KiB each).
const HANDOFF_DEPTH: usize = 4096;
use crate::api::{self, Api};
use crate::apply::{self, Control, Published};
use crate::compile::Compiler;
use crate::config::{Config, ConfigError, Summary};
use crate::metrics::{Metrics, Sources};
use crate::replay::render;
use crate::state::{StateDir, StoreMark};
use crate::store::Store;

/// Why the appliance could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration is valid but cannot run on this machine.
    #[error("{0}")]
    Setup(String),
    /// A worker failed while running.
    #[error("{0}")]
    Failed(String),
}

impl RunError {
    /// The exit code: 2 for a configuration that cannot run, 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) | RunError::Setup(_) => 2,
            RunError::Failed(_) => 1,
        }
    }
}

/// Options of `rampart run`.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    /// Print a one-line counter summary this often.
    pub stats_interval: Option<Duration>,
    /// Where the acknowledged model and the API token live.
    pub state_dir: PathBuf,
    /// The API's address.
    pub listen: std::net::SocketAddr,
    /// The API token's file (default: `token` in the state directory).
    pub token_file: Option<PathBuf>,
}

/// The API's default address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9740";
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rampart";

/// Logs one line to standard error.
pub(crate) fn log(msg: impl std::fmt::Display) {
    eprintln!("rampart: {msg}");
}

fn setup(msg: impl Into<String>) -> RunError {
    RunError::Setup(msg.into())
}

/// Frames per worker UMEM: enough for both fill rings and both TX rings full.
fn umem_frames(appliance: &Appliance) -> u32 {
    appliance.ring_size * 4
}

/// Restores the ports' promiscuous mode when dropped.
struct Promiscuous(Vec<(String, bool)>);

impl Drop for Promiscuous {
    fn drop(&mut self) {
        for (name, was) in &self.0 {
            if !was {
                let _ = xdp::set_promiscuous(name, false);
            }
        }
    }
}

/// The open-file limit the daemon raises its soft limit to (at most its hard
/// limit): every API connection, socket and file takes one.
pub const OPEN_FILES: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard one (at most [`OPEN_FILES`]):
/// a service manager's default of 1024 would let idle API clients take every
/// descriptor. Answers (before, after).
fn raise_open_files() -> (u64, u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (0, 0);
    };
    let want = hard.min(OPEN_FILES).max(soft);
    if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        return (soft, want);
    }
    (soft, soft)
}

/// Runs the appliance until SIGINT or SIGTERM (or a worker's failure).
pub fn run(opts: &Options) -> Result<(), RunError> {
    let files = raise_open_files();
    let signals = Signals::register()?;
    let loaded = load(opts)?;
    let listener = api::bind_address(opts.listen).map_err(setup)?;
    let mut compiler = Compiler::new();
    let started = Instant::now();
    let (snap, stats) = compiler.compile(&loaded.config.model, &loaded.config.settings);
    let compiled = Compiled {
        ms: started.elapsed().as_secs_f64() * 1e3,
        generation: snap.generation,
        group_sets: stats.group_sets,
    };
    let snapshots = Arc::new(ArcSwap::from_pointee(snap));
    let names = [loaded.appliance.port_a.clone(), loaded.appliance.port_b.clone()];
    let ports = [names[0].as_str(), names[1].as_str()];
    let promiscuous = prepare_ports(ports)?;
    let mut opened = open_workers(&loaded, &snapshots)?;
    let wake = banner(opts, &loaded, &opened, compiled, files);
    let idle = match loaded.appliance.idle {
        IdleSetting::Busy => Idle::Busy,
        IdleSetting::Adaptive => Idle::Adaptive,
    };
    let specs = std::mem::take(&mut opened.specs);
    let counters = opened.counters.clone();
    let handoff_view = opened.handoff_view.clone();
    let workers = Workers::start(specs, idle).map_err(|e| setup(format!("starting workers: {e}")))?;
    let control_stop = Arc::new(AtomicBool::new(false));
    let (api, fleet) = control_api(opts, loaded, compiler, &snapshots, opened);
    let api = Arc::new(api);
    let control = {
        let (api, stop, hup) = (
            Arc::clone(&api),
            Arc::clone(&control_stop),
            Arc::clone(&signals.hup),
        );
        thread::Builder::new()
            .name("rampart-control".into())
            .spawn(move || api::serve(listener, api, stop, hup, fleet))
            .map_err(|e| setup(format!("starting the control thread: {e}")))?
    };
    let printer = opts
        .stats_interval
        .map(|every| stats_printer(every, counters.clone(), Arc::clone(&control_stop)));

    let exits = workers.wait(&signals.term);
    control_stop.store(true, Ordering::Relaxed);
    let served = control
        .join()
        .map_err(|_| RunError::Failed("the control thread panicked".into()))?;
    if let Some(p) = printer {
        let _ = p.join();
    }
    let config = api.control.blocking_lock().config.clone();
    let mut failures = Vec::new();
    if let Err(e) = served {
        failures.push(format!("the API server failed: {e}"));
    }
    drop(promiscuous);
    drop(wake);
    report_exit(
        &config,
        &counters,
        exits,
        handoff_view.as_ref(),
        ports,
        &mut failures,
    );
    if failures.is_empty() {
        if !signals.term.load(Ordering::Relaxed) {
            return Err(RunError::Failed("the workers stopped without a signal".into()));
        }
        Ok(())
    } else {
        Err(RunError::Failed(failures.join("; ")))
    }
}

/// The flags the signal handlers set: stop (SIGINT, SIGTERM) and reload
/// (SIGHUP).
struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals, RunError> {
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&term))
                .map_err(|e| setup(format!("signal handler: {e}")))?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
            .map_err(|e| setup(format!("signal handler: {e}")))?;
        Ok(Signals { term, hup })
    }
}

/// The configuration checked against this machine, and the model to run.
struct Loaded {
    config: Config,
    appliance: Appliance,
    /// The config file, as named on the command line.
    origin: String,
    /// Where the model came from (the file, or the state directory and why).
    model_origin: String,
    from_file: bool,
    cores: Vec<u32>,
    state: StateDir,
    token: String,
    /// On a node of a fleet: the store and where the model stands in it.
    fleet: Option<(crate::cluster::Cluster, StoreMark)>,
}

/// Loads the config file, checks it against the machine, and takes the
/// model: the state directory's (acknowledged API changes) wins over the
/// file's, which only seeds an empty state directory.
fn load(opts: &Options) -> Result<Loaded, RunError> {
    let mut config = Config::load(&opts.config)?;
    let origin = opts.config.display().to_string();
    let appliance = config.appliance.clone().ok_or_else(|| {
        setup(format!(
            "{origin}: no [appliance] table: `rampart run` needs port_a and port_b (see docs/config.md)"
        ))
    })?;
    let cores = check_machine(&appliance, &origin)?;
    check_memory(
        &origin,
        config.settings.flow_table_capacity,
        appliance.workers,
        mem_available(),
    )?;
    let mut state = StateDir::open(&opts.state_dir).map_err(setup)?;
    let token = state.token(opts.token_file.as_deref()).map_err(setup)?;
    if let Some(cluster) = config.cluster.clone() {
        let (model_origin, mark) =
            load_from_store(&cluster, &mut config, &mut state, &opts.state_dir, &origin)?;
        return Ok(Loaded {
            config,
            appliance,
            origin,
            model_origin,
            from_file: false,
            cores,
            state,
            token,
            fleet: Some((cluster, mark)),
        });
    }
    let loaded_state = state.load().map_err(setup)?;
    // A standalone appliance keeps no store mark (a pulled directory has one).
    state.set_mark(None);
    let (model_origin, from_file) = match loaded_state {
        Some(saved) => {
            config.model = saved.model;
            let why = if saved.from_file {
                "unchanged since loaded from the config file"
            } else {
                "holds changes made through the API; the config file's model is not used"
            };
            (
                format!("{}/model.json ({why})", opts.state_dir.display()),
                saved.from_file,
            )
        }
        None => {
            state
                .save(&config.model, true)
                .map_err(|e| setup(format!("state directory {}: {e}", opts.state_dir.display())))?;
            (origin.clone(), true)
        }
    };
    Ok(Loaded {
        config,
        appliance,
        origin,
        model_origin,
        from_file,
        cores,
        state,
        token,
        fleet: None,
    })
}

/// The model of a node of a fleet: the store's; when the store holds none,
/// the state directory's (or the config file's) model seeds it; when etcd
/// cannot be reached, the state directory's copy of the store's model (the
/// local cache). Answers where the model came from and its mark.
fn load_from_store(
    cluster: &crate::cluster::Cluster,
    config: &mut Config,
    state: &mut StateDir,
    state_dir: &std::path::Path,
    origin: &str,
) -> Result<(String, StoreMark), RunError> {
    let store = Store::new(cluster);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| setup(format!("starting the store client: {e}")))?;
    let cached = state.load().map_err(setup)?;
    let named = format!("etcd {}, prefix {}", cluster.endpoints.join(","), cluster.prefix);
    let save = |state: &mut StateDir, model: &crate::model::Model, mark: StoreMark| {
        state.set_mark(Some(mark));
        state
            .save(model, false)
            .map_err(|e| setup(format!("state directory {}: {e}", state_dir.display())))
    };
    let loaded = rt.block_on(async {
        match store.load(None).await {
            Ok(None) => {
                // An empty store: this node's model seeds it, unless another
                // node does first.
                let (seed, from) = match &cached {
                    Some(c) => (c.model.clone(), format!("{}/model.json", state_dir.display())),
                    None => (config.model.clone(), origin.to_owned()),
                };
                match store.replace(None, None, &seed, &config.settings).await {
                    Ok(_) | Err(crate::store::StoreError::Conflict { .. }) => store
                        .load(None)
                        .await
                        .map(|l| l.map(|l| (l, format!(" (seeded from {from})")))),
                    Err(e) => Err(e),
                }
            }
            other => other.map(|l| l.map(|l| (l, String::new()))),
        }
    });
    match loaded {
        Ok(Some((l, seeded))) => {
            if let Some(s) = l.settings {
                config.settings = s;
            }
            config.model = l.model;
            save(state, &config.model, l.mark)?;
            Ok((
                format!(
                    "the fleet store ({named}) at revision {}{seeded}",
                    l.mark.revision
                ),
                l.mark,
            ))
        }
        Ok(None) => Err(setup(format!(
            "the fleet store ({named}) holds no model after seeding it"
        ))),
        Err(e @ crate::store::StoreError::Invalid(_)) => Err(setup(format!("{e} ({named})"))),
        Err(e) => match cached {
            Some(c) if c.mark.is_some() => {
                let mark = c.mark.unwrap_or_default();
                config.model = c.model;
                Ok((
                    format!(
                        "the local cache of the fleet store in {} at revision {} (the store is unreachable: {e}); \
                         it follows the store once reachable",
                        state_dir.display(),
                        mark.revision
                    ),
                    mark,
                ))
            }
            _ => Err(setup(format!(
                "{e} ({named}), and {} holds no copy of the fleet's model: start when etcd is reachable",
                state_dir.display()
            ))),
        },
    }
}

/// The first snapshot: its generation, size and compile time.
#[derive(Clone, Copy)]
struct Compiled {
    ms: f64,
    generation: u64,
    group_sets: usize,
}

/// Removes XDP programs a previous run left on the ports and sets them
/// promiscuous (restored when the answer is dropped).
fn prepare_ports(ports: [&str; 2]) -> Result<Promiscuous, RunError> {
    for port in ports {
        if let Some(id) = xdp::detach_any(port).map_err(|e| setup(e.to_string()))? {
            log(format!(
                "{port}: removed XDP program {id} left attached (by a previous run?)"
            ));
        }
    }
    let mut promiscuous = Promiscuous(Vec::new());
    for port in ports {
        let was =
            xdp::set_promiscuous(port, true).map_err(|e| setup(format!("{port}: promiscuous mode: {e}")))?;
        promiscuous.0.push((port.to_owned(), was));
    }
    Ok(promiscuous)
}

/// The workers, ready to start: one per core, each with its sockets on both
/// ports, its connection table, doorbell and hand-off mailbox.
struct Opened {
    specs: Vec<WorkerSpec<Pipeline>>,
    counters: Vec<Arc<Counters>>,
    loops: Vec<Arc<LoopStats>>,
    /// Each socket: interface, queue, descriptor.
    sockets: Vec<(String, u32, i32)>,
    /// Each socket, as the banner shows it.
    port_lines: Vec<String>,
    bells: Vec<Arc<Doorbell>>,
    handoff_view: Option<HandoffView>,
    /// Connections each worker's table holds.
    capacity: usize,
}

/// Opens every worker's sockets and builds its pipeline.
fn open_workers(loaded: &Loaded, snapshots: &Arc<ArcSwap<Snapshot>>) -> Result<Opened, RunError> {
    let appliance = &loaded.appliance;
    let ports = [appliance.port_a.as_str(), appliance.port_b.as_str()];
    let port_opts = port_options(appliance);
    let capacity = usize::try_from(loaded.config.settings.flow_table_capacity).unwrap_or(usize::MAX);
    let bells = loaded
        .cores
        .iter()
        .map(|_| Doorbell::new().map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(format!("creating the workers' doorbells: {e}")))?;
    let (mut handoffs, handoff_view) = if loaded.cores.len() > 1 {
        let (ends, view) = Handoff::group(&bells, HANDOFF_DEPTH);
        (ends.into_iter().map(Some).collect(), Some(view))
    } else {
        (vec![None], None)
    };
    let mut opened = Opened {
        specs: Vec::new(),
        counters: Vec::new(),
        loops: Vec::new(),
        sockets: Vec::new(),
        port_lines: Vec::new(),
        bells: Vec::new(),
        handoff_view,
        capacity,
    };
    for (queue, core) in loaded.cores.iter().enumerate() {
        let io = Io::open(&ports, queue as u32, umem_frames(appliance), &port_opts)
            .map_err(|e| setup(e.to_string()))?;
        opened
            .port_lines
            .extend(io.ports().iter().map(|p| p.info().to_string()));
        opened.sockets.extend(
            io.ports()
                .iter()
                .map(|p| (p.info().interface.clone(), queue as u32, p.fd())),
        );
        let stats = Arc::new(LoopStats::default());
        opened.loops.push(Arc::clone(&stats));
        let worker = Worker::new(WorkerConfig {
            max_frame: appliance.max_frame(),
            ..WorkerConfig::for_capacity(capacity)
        });
        opened.counters.push(worker.counters());
        opened.specs.push(WorkerSpec {
            io,
            stage: Pipeline {
                worker,
                snapshots: Arc::clone(snapshots),
            },
            core: Some(*core as usize),
            handoff: handoffs[queue].take(),
            bell: Some(Arc::clone(&bells[queue])),
            stats: Some(stats),
        });
    }
    opened.bells = bells;
    Ok(opened)
}

/// What the control thread serves: the model and compiler behind the apply
/// path, the token, and the metrics over the workers' counters.
fn control_api(
    opts: &Options,
    loaded: Loaded,
    compiler: Compiler,
    snapshots: &Arc<ArcSwap<Snapshot>>,
    opened: Opened,
) -> (Api, Option<api::FleetTasks>) {
    let generation = snapshots.load().generation;
    let published = Arc::new(ArcSwap::new(Published::of(
        &loaded.config,
        loaded.from_file,
        generation,
    )));
    let mut tasks = None;
    let sync = loaded.fleet.as_ref().map(|(cluster, mark)| {
        let store = Arc::new(Store::new(cluster));
        let (batches, receiver) = tokio::sync::mpsc::unbounded_channel();
        let bell = Arc::new(tokio::sync::Notify::new());
        let reload = Arc::new(tokio::sync::Notify::new());
        let (enforcing, watching) =
            tokio::sync::watch::channel((mark.revision, mark.meta_revision, generation));
        store.health.enforced(mark.meta_revision);
        tasks = Some(api::FleetTasks {
            store: Arc::clone(&store),
            from: *mark,
            feed: crate::store::watch::Feed { batches, bell },
            reload: Arc::clone(&reload),
            enforcing: watching,
            api: opts.listen.to_string(),
        });
        apply::Synced {
            store,
            mark: *mark,
            batches: receiver,
            enforcing,
            reload,
        }
    });
    let store = sync.as_ref().map(|s| Arc::clone(&s.store));
    let metrics = Metrics::new(Sources {
        counters: opened.counters.clone(),
        loops: opened.loops,
        handoff: opened.handoff_view,
        sockets: opened.sockets,
        snapshots: Arc::clone(snapshots),
    });
    if let Some(s) = &store {
        metrics.add_store(Arc::clone(s));
    }
    let api = Api {
        store,
        published: Arc::clone(&published),
        control: tokio::sync::Mutex::new(Control {
            sync,
            published,
            decisions: std::collections::HashMap::new(),
            config_path: opts.config.clone(),
            config: loaded.config,
            compiler,
            snapshots: Arc::clone(snapshots),
            counters: opened.counters.clone(),
            bells: opened.bells,
            state: Some(loaded.state),
            from_file: loaded.from_file,
            enforce_timeout: apply::ENFORCE_TIMEOUT,
        }),
        token: loaded.token,
        metrics,
    };
    (api, tasks)
}

/// The sockets' options, from the `[appliance]` table.
fn port_options(appliance: &Appliance) -> PortOptions {
    PortOptions {
        xdp: match appliance.xdp_mode {
            XdpModeSetting::Auto => XdpMode::Auto,
            XdpModeSetting::Native => XdpMode::Native,
            XdpModeSetting::Generic => XdpMode::Generic,
        },
        bind: match appliance.bind_mode {
            BindModeSetting::Auto => BindMode::Auto,
            BindModeSetting::ZeroCopy => BindMode::ZeroCopy,
            BindModeSetting::Copy => BindMode::Copy,
        },
        busy_poll: appliance.busy_poll,
        ring_size: appliance.ring_size,
    }
}

/// Holds the CPU latency request `wake_latency_us` asks for (adaptive
/// workers only); says what it did in the banner's line.
fn hold_wake_latency(appliance: &Appliance) -> (Option<WakeLatency>, String) {
    match (appliance.idle, appliance.wake_latency_us) {
        (IdleSetting::Busy, _) => (None, "busy workers do not sleep".to_owned()),
        (IdleSetting::Adaptive, WakeLatencySetting::Kernel) => (
            None,
            "idle states left to the kernel (wake_latency_us = \"kernel\")".to_owned(),
        ),
        (IdleSetting::Adaptive, WakeLatencySetting::Micros(us)) => match WakeLatency::hold(us) {
            Ok(held) => (
                Some(held),
                format!(
                    "idle CPUs wake within {us} µs while rampart runs ({} request held)",
                    wake::DEVICE
                ),
            ),
            Err(e) => (
                None,
                format!(
                    "warning: no CPU latency request ({e}); a sleeping worker may wake late (a deep idle state's exit)"
                ),
            ),
        },
    }
}

/// Prints what runs where; holds the wake-up latency request (kept until the
/// workers have stopped; the kernel drops it at exit whatever the exit).
fn banner(
    opts: &Options,
    loaded: &Loaded,
    opened: &Opened,
    compiled: Compiled,
    files: (u64, u64),
) -> Option<WakeLatency> {
    let appliance = &loaded.appliance;
    let origin = &loaded.origin;
    println!("rampart {} running", env!("CARGO_PKG_VERSION"));
    println!("  config      {origin}");
    println!("  model       from {}", loaded.model_origin);
    println!(
        "  api         http://{} (token in {})",
        opts.listen,
        opts.token_file
            .clone()
            .unwrap_or_else(|| opts.state_dir.join("token"))
            .display()
    );
    println!("  port A      {}   port B {}", appliance.port_a, appliance.port_b);
    for line in &opened.port_lines {
        println!("  socket      {line}");
    }
    println!(
        "  workers     {} on cores {:?}, idle {}, ring {} descriptors, mtu {}",
        appliance.workers,
        loaded.cores,
        match appliance.idle {
            IdleSetting::Busy => "busy",
            IdleSetting::Adaptive => "adaptive",
        },
        appliance.ring_size,
        appliance.mtu
    );
    let (wake, line) = hold_wake_latency(appliance);
    println!("  wake-up     {line}");
    let raised = if files.1 > files.0 {
        format!(" (raised from {})", files.0)
    } else {
        String::new()
    };
    println!("  open files  {}{raised}", files.1);
    println!(
        "  policy      {}; {} group sets; snapshot generation {} compiled in {:.2} ms",
        Summary::of(&loaded.config.model),
        compiled.group_sets,
        compiled.generation,
        compiled.ms
    );
    println!("  flows       {} per worker", opened.capacity);
    println!("stop with SIGINT or SIGTERM; SIGHUP re-reads {origin}");
    wake
}

/// Logs the one-line counter summary every `every` until `stop`.
fn stats_printer(
    every: Duration,
    counters: Vec<Arc<Counters>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
            if last.elapsed() >= every {
                last = Instant::now();
                log(one_line(&Totals::sum(counters.iter().map(|c| &**c))));
            }
        }
    })
}

/// Prints the counters and the rings' and hand-off's losses after the
/// workers stopped; adds what went wrong to `failures` (a worker's panic, a
/// frame pool not whole, an XDP program left attached).
fn report_exit(
    config: &Config,
    counters: &[Arc<Counters>],
    exits: Vec<WorkerExit<Pipeline>>,
    handoff: Option<&HandoffView>,
    ports: [&str; 2],
    failures: &mut Vec<String>,
) {
    let totals = Totals::sum(counters.iter().map(|c| &**c));
    println!("rampart stopped; counters:");
    print!("{}", render(config, &totals));
    let (mut tx_ring_full, mut kernel_dropped) = (0, 0);
    for exit in exits {
        match exit.result {
            Err(panic) => failures.push(format!("worker {} panicked: {panic}", exit.index)),
            Ok((report, _)) => {
                tx_ring_full += report.tx_ring_full;
                kernel_dropped += report.kernel_dropped;
                if !report.whole() {
                    failures.push(format!(
                        "worker {}: frame pool not whole at exit: {report:?}",
                        exit.index
                    ));
                }
            }
        }
    }
    println!(
        "rings: {kernel_dropped} frames dropped by the kernel before a worker saw them \
         (RX ring full, no fill frame, too long); {tx_ring_full} forwarded frames dropped on a full TX ring"
    );
    if let Some(view) = handoff {
        for (i, h) in view.stats().iter().enumerate() {
            println!(
                "handoff: worker {i} passed {} frames to their owners and decided {} passed to it; \
                 dropped {} on a full mailbox, {} for want of a free frame",
                h.sent, h.received, h.mailbox_full, h.no_frame
            );
        }
    }
    for port in ports {
        if let Some((id, mode)) = xdp::attached_program(port) {
            failures.push(format!(
                "{port}: XDP program {id} ({mode}) still attached after stop"
            ));
        }
    }
}

/// What can be checked before any interface is touched; returns the workers'
/// cores.
fn check_machine(appliance: &Appliance, origin: &str) -> Result<Vec<u32>, RunError> {
    for (field, port) in [("port_a", &appliance.port_a), ("port_b", &appliance.port_b)] {
        if xdp::if_index(port).is_none() {
            return Err(setup(format!(
                "{origin}: appliance.{field}: no interface named {port:?} here"
            )));
        }
        let queues = xdp::rx_queues(port);
        if queues < appliance.workers {
            return Err(setup(format!(
                "{origin}: appliance.workers: {} workers need {} receive queues, but {field} {port} has {queues}",
                appliance.workers, appliance.workers
            )));
        }
    }
    let available = core_affinity::get_core_ids().map_or(1, |c| c.len() as u32);
    let cores = appliance.worker_cores(available);
    if let Some(core) = cores.iter().find(|c| **c >= available) {
        return Err(setup(format!(
            "{origin}: appliance.cores: core {core} does not exist (this machine has {available})"
        )));
    }
    Ok(cores)
}

/// Bytes of memory available for new allocations (the kernel's
/// `MemAvailable`), if it says.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The workers' connection and fragment tables must fit in the memory
/// available (`available` bytes, when known). Every page of them is touched at
/// start, so a capacity the machine cannot hold would end with the OOM killer
/// rather than an error naming the setting.
fn check_memory(origin: &str, capacity: u64, workers: u32, available: Option<u64>) -> Result<(), RunError> {
    let Some(available) = available else {
        return Ok(());
    };
    let per_worker =
        WorkerConfig::for_capacity(usize::try_from(capacity).unwrap_or(usize::MAX)).table_bytes() as u64;
    let need = per_worker.saturating_mul(u64::from(workers));
    if need > available {
        let mib = |b: u64| b.div_ceil(1 << 20);
        return Err(setup(format!(
            "{origin}: settings.flow_table_capacity: {capacity} connections take {} MiB of tables per worker, \
             {} MiB for {workers} worker(s), more than the {} MiB this machine has available; \
             lower flow_table_capacity or appliance.workers",
            mib(per_worker),
            mib(need),
            mib(available)
        )));
    }
    Ok(())
}

/// The periodic counter line.
fn one_line(t: &Totals) -> String {
    let mut s = String::new();
    for (name, p) in [("A", &t.ports[0]), ("B", &t.ports[1])] {
        let _ = write!(
            s,
            "{name}: rx {} fwd {} drop {}; ",
            p.rx_packets, p.forwarded_packets, p.dropped_packets
        );
    }
    let _ = write!(
        s,
        "flows {} active, {} created; generation {}",
        t.flows_active, t.flows_created, t.generation
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capacity whose tables do not fit is refused with the setting, the
    /// sizes and what to change; one that fits, or an unknown amount of
    /// memory, passes.
    #[test]
    fn tables_larger_than_the_memory_available_are_refused() {
        let per_worker = WorkerConfig::for_capacity(262_144).table_bytes() as u64;
        assert!(check_memory("c.toml", 262_144, 2, Some(2 * per_worker)).is_ok());
        assert!(check_memory("c.toml", 262_144, 2, None).is_ok());
        let err = check_memory("c.toml", 262_144, 2, Some(2 * per_worker - 1))
            .expect_err("two workers' tables do not fit")
            .to_string();
        let mib = per_worker.div_ceil(1 << 20);
        assert!(
            err.starts_with("c.toml: settings.flow_table_capacity: 262144 connections take"),
            "{err}"
        );
        assert!(err.contains(&format!("{mib} MiB of tables per worker")), "{err}");
        assert!(err.contains("for 2 worker(s)"), "{err}");
        assert!(
            err.contains("lower flow_table_capacity or appliance.workers"),
            "{err}"
        );
        // The largest capacity allowed needs gigabytes per worker.
        let max = crate::settings::MAX_FLOW_TABLE_CAPACITY;
        assert!(check_memory("c.toml", max, 1, Some(4 << 30)).is_err());
    }
}
