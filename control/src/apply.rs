//! The one door into the dataplane: every change of the model (API, config
//! file reload, SIGHUP) goes through [`Control`], which the control thread
//! owns behind one lock, so changes apply one at a time.
//!
//! The path of a change:
//! 1. the caller applies it to a copy of the model through the model's own
//!    operations, which validate all of it first (all-or-nothing, spec §6);
//! 2. [`Control::publish`] saves the new model in the state directory
//!    (crash-safe), compiles it (incrementally), publishes the snapshot and
//!    rings the workers' doorbells;
//! 3. [`Control::wait_enforced`] returns once every worker runs that
//!    snapshot's generation, or says which workers did not within the timeout.
//!
//! Readers never take that lock: [`Control::publish`] also publishes the
//! model itself as a [`Published`] view (a copy of a persistent model costs
//! nothing like its size), which GETs read lock-free while a change is in
//! flight.
//!
//! With a fleet store (`[cluster]`), step 2 is preceded by the store's
//! transaction ([`crate::store::Store::commit`], made by the API), and
//! [`Control::apply_batches`] applies the changes other nodes made, which
//! the watch hands on ([`Synced`]), through the same save, compile and
//! publish.
//!
//! Nothing here knows HTTP: errors are [`ApplyError`], which the API turns
//! into answers.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rampart_dataplane::handoff::Doorbell;
use rampart_dataplane::snapshot::Snapshot;
use rampart_dataplane::stats::Counters;

use crate::compile::Compiler;
use crate::config::Config;
use crate::model::Model;
use crate::settings::Settings;
use crate::state::{StateDir, StoreMark};
use crate::store::watch::{Batch, Enforcing};
use crate::store::Store;

/// How long a change waits for every worker to run its snapshot.
pub const ENFORCE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the control thread owns.
pub struct Control {
    pub config_path: PathBuf,
    /// The live configuration: the file's settings and appliance table, and
    /// the model (from the state directory or the file).
    pub config: Config,
    pub compiler: Compiler,
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    pub counters: Vec<Arc<Counters>>,
    /// Rung after publishing, so sleeping workers adopt the snapshot now.
    pub bells: Vec<Arc<Doorbell>>,
    pub state: Option<StateDir>,
    /// The model is the config file's, unchanged through the API.
    pub from_file: bool,
    pub enforce_timeout: Duration,
    /// The model and settings as last published, for readers.
    pub published: Arc<ArcSwap<Published>>,
    /// First-packet decisions per interface (model id) summed over the
    /// workers at the last [`Control::rechoose_merged`].
    pub decisions: HashMap<u32, u64>,
    /// The fleet store this node follows, when it is one of a fleet.
    pub sync: Option<Synced>,
}

/// A node of a fleet: where its model stands in the store, and what the
/// watch hands on.
#[derive(Debug)]
pub struct Synced {
    pub store: Arc<Store>,
    /// Where the model enforced stands in the store.
    pub mark: StoreMark,
    pub batches: tokio::sync::mpsc::UnboundedReceiver<Batch>,
    /// What this node enforces, for its record in the store.
    pub enforcing: tokio::sync::watch::Sender<Enforcing>,
    /// Asks the watch to read the whole model again.
    pub reload: Arc<tokio::sync::Notify>,
}

/// The model as last published: what readers see, without the lock.
#[derive(Debug)]
pub struct Published {
    pub model: Model,
    pub settings: Settings,
    /// The model is the config file's, unchanged through the API.
    pub from_file: bool,
    /// The snapshot generation compiled from it.
    pub generation: u64,
}

impl Published {
    pub fn of(config: &Config, from_file: bool, generation: u64) -> Arc<Self> {
        Arc::new(Published {
            model: config.model.clone(),
            settings: config.settings,
            from_file,
            generation,
        })
    }
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("config_path", &self.config_path)
            .field("from_file", &self.from_file)
            .finish_non_exhaustive()
    }
}

/// A change that was published: the generation enforcing it.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    pub generation: u64,
    pub compile_ms: f64,
    /// Groups whose classifiers were rebuilt.
    pub rebuilt: usize,
}

/// Why a change did not (fully) apply.
#[derive(Debug)]
pub enum ApplyError {
    /// The state directory could not be written; nothing changed.
    Persist { dir: PathBuf, error: String },
    /// Published, but not every worker runs it yet.
    NotEnforced {
        generation: u64,
        late: Vec<usize>,
        timeout: Duration,
    },
    /// A reload found the config file invalid; the running model is kept.
    InvalidConfig(String),
    /// A reload would drop changes made through the API.
    ModelChanged { config_path: PathBuf },
    /// The model is the fleet store's: a file does not replace it.
    InFleet { store: String },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Persist { dir, error } => {
                write!(f, "saving the model in {}: {error}; nothing changed", dir.display())
            }
            ApplyError::NotEnforced {
                generation,
                late,
                timeout,
            } => write!(
                f,
                "the change is saved and published as generation {generation}, but worker(s) {late:?} did not run it within {} ms",
                timeout.as_millis()
            ),
            ApplyError::InvalidConfig(e) => write!(f, "reload refused, running model kept: {e}"),
            ApplyError::ModelChanged { config_path } => write!(
                f,
                "reload refused: the running model has changes made through the API that {} does not have; \
                 applying the file would drop them. Export the model into the file first, or reload with force",
                config_path.display()
            ),
            ApplyError::InFleet { store } => write!(
                f,
                "reload refused: this node's model is the fleet store's ({store}); change it through the API, \
                 or replace it with `rampart ctl store push`"
            ),
        }
    }
}

impl std::error::Error for ApplyError {}

impl Control {
    /// Saves, compiles and publishes `model` (already validated); does not wait.
    pub fn publish(&mut self, mut model: Model, from_file: bool) -> Result<Applied, ApplyError> {
        if let Some(state) = &mut self.state {
            state.save(&model, from_file).map_err(|e| ApplyError::Persist {
                dir: state.path().to_owned(),
                error: e.to_string(),
            })?;
        }
        let started = Instant::now();
        let (snap, stats) = self.compiler.compile(&model, &self.config.settings);
        // The compiler keeps the version it compiled; older records are spent.
        model.trim_changes();
        let generation = snap.generation;
        self.snapshots.store(Arc::new(snap));
        for bell in &self.bells {
            bell.ring();
        }
        self.config.model = model;
        self.from_file = from_file;
        self.published
            .store(Published::of(&self.config, from_file, generation));
        Ok(Applied {
            generation,
            compile_ms: started.elapsed().as_secs_f64() * 1e3,
            rebuilt: stats.rebuilt,
        })
    }

    /// Publishes `model` (and `settings`, when given) as the store's model
    /// at `mark`.
    pub fn publish_at(
        &mut self,
        model: Model,
        mark: StoreMark,
        settings: Option<Settings>,
    ) -> Result<Applied, ApplyError> {
        if let Some(state) = &mut self.state {
            state.set_mark(Some(mark));
        }
        let old = self.config.settings;
        if let Some(s) = settings {
            self.config.settings = s;
        }
        let applied = self
            .publish(model, false)
            .inspect_err(|_| self.config.settings = old)?;
        if let Some(sync) = &mut self.sync {
            sync.mark = mark;
        }
        Ok(applied)
    }

    /// Applies what the watch has handed on, without waiting; answers the
    /// last publication, if any. A change that does not apply to this
    /// node's model (it should always) is logged and the whole model read
    /// again; meanwhile the last model stays enforced.
    pub fn apply_batches(&mut self) -> Option<Applied> {
        let mut last = None;
        loop {
            let Some(sync) = &mut self.sync else { return last };
            let Ok(batch) = sync.batches.try_recv() else {
                return last;
            };
            let at = sync.mark;
            let reload = Arc::clone(&sync.reload);
            let (result, what) = match batch {
                Batch::Change { mark, delta, writer } => {
                    if mark.revision <= at.revision {
                        continue;
                    }
                    let mut model = self.config.model.clone();
                    let what = format!("the change at revision {} by {writer}", mark.revision);
                    match model.apply_checked(delta) {
                        Ok(()) => (self.publish_at(model, mark, None), what),
                        Err(e) => {
                            crate::daemon::log(format_args!(
                                "fleet store: {what} does not apply to this node's model: {e}; reading the whole model"
                            ));
                            reload.notify_one();
                            continue;
                        }
                    }
                }
                Batch::Whole(l) => {
                    if l.mark.revision <= at.revision && l.mark.epoch == at.epoch {
                        continue;
                    }
                    let what = format!("the whole model at revision {}", l.mark.revision);
                    (self.publish_at(l.model, l.mark, l.settings), what)
                }
            };
            match result {
                Ok(a) => last = Some(a),
                Err(e) => {
                    crate::daemon::log(format_args!(
                        "fleet store: {what} not applied: {e}; reading the whole model"
                    ));
                    reload.notify_one();
                }
            }
        }
    }

    /// Tells the fleet what this node enforces now (after
    /// [`Control::wait_enforced`]).
    pub fn report_enforced(&self) {
        if let Some(sync) = &self.sync {
            let generation = self.enforced_generation();
            sync.enforcing
                .send_replace((sync.mark.revision, sync.mark.meta_revision, generation));
            sync.store.health.enforced(sync.mark.meta_revision);
        }
    }

    /// Applies what the watch hands on until this node's model is at least
    /// the store's at `meta_revision`, or `timeout` passes (false).
    pub async fn catch_up(&mut self, meta_revision: i64, timeout: Duration) -> bool {
        let started = Instant::now();
        loop {
            if let Some(applied) = tokio::task::block_in_place(|| self.apply_batches()) {
                if self.wait_enforced(applied).await.is_ok() {
                    self.report_enforced();
                }
            }
            let at = self.sync.as_ref().map_or(i64::MAX, |s| s.mark.meta_revision);
            if at >= meta_revision {
                return true;
            }
            if started.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Re-chooses the group sets merged for their traffic from the
    /// first-packet decisions of the last `period` (the workers'
    /// per-interface counters), and publishes the snapshot if the choice
    /// changed. Answers its generation and how many sets are merged.
    pub fn rechoose_merged(&mut self, period: Duration) -> Option<(u64, usize)> {
        let mut now: HashMap<u32, u64> = HashMap::new();
        for worker in &self.counters {
            for (key, hits) in worker.interfaces.iter() {
                let (interface, _, _) = rampart_dataplane::stats::interface_of_key(key);
                *now.entry(interface).or_default() += hits;
            }
        }
        let secs = period.as_secs_f64().max(1e-3);
        let rates: HashMap<u32, f64> = now
            .iter()
            .map(|(i, n)| {
                (
                    *i,
                    n.saturating_sub(self.decisions.get(i).copied().unwrap_or(0)) as f64 / secs,
                )
            })
            .collect();
        self.decisions = now;
        let (snap, stats) = self.compiler.rechoose(&self.config.model, &rates)?;
        let generation = snap.generation;
        self.snapshots.store(Arc::new(snap));
        for bell in &self.bells {
            bell.ring();
        }
        self.published
            .store(Published::of(&self.config, self.from_file, generation));
        Some((generation, stats.merged))
    }

    /// The generation the slowest worker runs.
    pub fn enforced_generation(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.generation.get())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The generation published last.
    pub fn published_generation(&self) -> u64 {
        self.snapshots.load().generation
    }

    /// Returns once every worker runs `applied`'s generation, or after the
    /// enforce timeout with the workers that do not.
    pub async fn wait_enforced(&self, applied: Applied) -> Result<(), ApplyError> {
        let started = Instant::now();
        loop {
            if self.enforced_generation() >= applied.generation {
                return Ok(());
            }
            if started.elapsed() > self.enforce_timeout {
                let late = self
                    .counters
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.generation.get() < applied.generation)
                    .map(|(i, _)| i)
                    .collect();
                return Err(ApplyError::NotEnforced {
                    generation: applied.generation,
                    late,
                    timeout: self.enforce_timeout,
                });
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Re-reads the config file. Refused (model kept) when the file is
    /// invalid, or when the live model holds changes made through the API and
    /// `force` is not given: applying the file would drop them. The string is
    /// a note for the operator (empty when there is none).
    pub fn reload(&mut self, force: bool) -> Result<(Applied, String), ApplyError> {
        if let Some(sync) = &self.sync {
            return Err(ApplyError::InFleet {
                store: format!(
                    "{:?}, prefix {}",
                    sync.store.cluster.endpoints,
                    sync.store.keys.prefix()
                ),
            });
        }
        let new = Config::load(&self.config_path).map_err(|e| ApplyError::InvalidConfig(e.to_string()))?;
        if !self.from_file && !force {
            return Err(ApplyError::ModelChanged {
                config_path: self.config_path.clone(),
            });
        }
        let mut note = String::new();
        if new.appliance != self.config.appliance {
            note = "[appliance] changes take effect at the next start".to_owned();
        }
        self.config.settings = new.settings;
        let applied = self.publish(new.model, true)?;
        Ok((applied, note))
    }
}
