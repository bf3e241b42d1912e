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
use crate::state::StateDir;

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
