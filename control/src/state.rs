//! The state directory: the model as last acknowledged, kept crash-safely, and
//! the API's bearer token.
//!
//! Files:
//! - `model.json`: `{"format":1,"from_file":BOOL,"seq":N,"model":{...}}`, the
//!   whole model exactly (ids included) with every journal record up to
//!   `seq` applied. Written to `model.json.tmp`, fsynced, renamed over
//!   `model.json`, then the directory fsynced: after a crash at any moment
//!   the file holds either the previous model or the new one, never a mix.
//!   `from_file` says whether the model is still the one the config file gave
//!   (no change through the API since).
//! - `journal-<first seq>.log`: one JSON line per accepted change,
//!   `{"seq":N,"from_file":BOOL,"delta":{...}}`, the changed objects' new
//!   values and the removed ones' ids ([`Delta`]); appended and fsynced before
//!   the change is answered, so a change costs what it touches, not the size
//!   of the model. When the journal outgrows the model (at least
//!   [`COMPACT_MIN_BYTES`]), appends move to a new journal file and a
//!   background thread writes `model.json` with the records so far, then
//!   removes the journal files it holds.
//! - With a fleet store (`[cluster]`), both also carry `"mark"`: the store
//!   revision the model reflects ([`StoreMark`]), so that the directory is
//!   the node's local cache of the fleet's model.
//! - `token`: the API's bearer token, created with mode 0600 on first start.
//! - `lock`: held (flock) while a daemon uses the directory, so two daemons
//!   cannot write the same state.
//!
//! Recovery: `model.json`, then every journal record after its `seq`, in
//! order. A last line cut short (a crash while appending: never answered) is
//! dropped; any other bad line, or a gap in the sequence, is an error that
//! names the file, never silently skipped.
//!
//! Which model wins at start: a `model.json` in the state directory, always
//! (it holds changes acknowledged through the API, which the file does not);
//! the config file's model is used only when the state directory has none.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::model::{Delta, Model};

const FORMAT: u32 = 1;
const MODEL: &str = "model.json";
const TOKEN: &str = "token";
const JOURNAL_PREFIX: &str = "journal-";
const JOURNAL_SUFFIX: &str = ".log";

/// The journal is compacted into `model.json` once it is larger than the
/// last `model.json` and than this.
pub const COMPACT_MIN_BYTES: u64 = 4 << 20;

/// An open state directory (locked while this value lives).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: Flock<File>,
    journal: Option<Journal>,
    compact_min_bytes: u64,
    /// Recorded with every save.
    mark: Option<StoreMark>,
}

/// Where a model stands in the fleet store: what a node's local cache
/// records with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreMark {
    /// The store revision through which the model is applied.
    pub revision: i64,
    /// The revision of the store's last model change (its `meta` key).
    pub meta_revision: i64,
    /// The store's generation of object keys.
    pub epoch: u64,
}

/// The journal file appended to, and where the model stands in it.
#[derive(Debug)]
struct Journal {
    file: File,
    /// Bytes in the journal files not yet compacted.
    bytes: u64,
    /// Length of `file` up to its last whole record.
    file_len: u64,
    /// An append failed and could not be undone: the next save is whole.
    broken: bool,
    /// The seq of the next record.
    next_seq: u64,
    /// The model version the last record (or `model.json`) holds.
    version: u64,
    /// Size of the last `model.json` written.
    base_bytes: u64,
    /// A compaction writing `model.json` in the background.
    compaction: Option<JoinHandle<std::io::Result<()>>>,
}

/// What `model.json` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub model: Model,
    /// The model is the config file's, unchanged through the API.
    pub from_file: bool,
    /// Where it stands in the fleet store, when it came from one.
    pub mark: Option<StoreMark>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFile {
    format: u32,
    from_file: bool,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    mark: Option<StoreMark>,
    model: serde_json::Value,
}

/// One journal line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    seq: u64,
    from_file: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<StoreMark>,
    delta: Delta,
}

fn journal_name(first_seq: u64) -> String {
    format!("{JOURNAL_PREFIX}{first_seq:020}{JOURNAL_SUFFIX}")
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

/// What `model.json` is written as, streamed.
#[derive(Serialize)]
struct SavedOut<'a> {
    format: u32,
    from_file: bool,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<StoreMark>,
    model: &'a Model,
}

/// Writes `model.json` crash-safely, streaming it (no copy of the whole
/// text in memory); answers its size.
fn write_model(
    dir: &Path,
    model: &Model,
    from_file: bool,
    seq: u64,
    mark: Option<StoreMark>,
) -> std::io::Result<u64> {
    let tmp = dir.join(format!("{MODEL}.tmp"));
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
    let saved = SavedOut {
        format: FORMAT,
        from_file,
        seq,
        mark,
        model,
    };
    serde_json::to_writer(&mut w, &saved).map_err(std::io::Error::other)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    let size = f.metadata()?.len();
    drop(f);
    fs::rename(&tmp, dir.join(MODEL))?;
    sync_dir(dir)?;
    Ok(size)
}

impl StateDir {
    /// Opens (creating it with mode 0700 if needed) and locks `path`.
    pub fn open(path: &Path) -> Result<StateDir, String> {
        let show = path.display();
        if !path.exists() {
            fs::create_dir_all(path).map_err(|e| format!("state directory {show}: cannot create: {e}"))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("state directory {show}: {e}"))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path.join("lock"))
            .map_err(|e| format!("state directory {show}: cannot open its lock file: {e}"))?;
        let lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            format!("state directory {show}: in use by another rampart ({e}); one daemon per state directory")
        })?;
        Ok(StateDir {
            path: path.to_owned(),
            _lock: lock,
            journal: None,
            compact_min_bytes: COMPACT_MIN_BYTES,
            mark: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store mark recorded with every save from now on.
    pub fn set_mark(&mut self, mark: Option<StoreMark>) {
        self.mark = mark;
    }

    /// Journal size at which a compaction starts (at least the last
    /// `model.json`'s size); for tests.
    pub fn set_compact_min_bytes(&mut self, bytes: u64) {
        self.compact_min_bytes = bytes;
    }

    /// The journal files, by first seq.
    fn journal_files(&self) -> Result<Vec<(u64, PathBuf)>, String> {
        let show = self.path.display();
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(|e| format!("state directory {show}: {e}"))? {
            let entry = entry.map_err(|e| format!("state directory {show}: {e}"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let first = name
                .strip_prefix(JOURNAL_PREFIX)
                .and_then(|n| n.strip_suffix(JOURNAL_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                files.push((first, entry.path()));
            }
        }
        files.sort();
        Ok(files)
    }

    /// The saved model (`model.json` and the journal after it), or `None`
    /// when there is none yet. Anything that cannot be read back is an error
    /// (never silently replaced). Appends go on after what was read.
    pub fn load(&mut self) -> Result<Option<Saved>, String> {
        let file = self.path.join(MODEL);
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some((_, j)) = self.journal_files()?.first() {
                    return Err(format!(
                        "{}: a journal without {MODEL}; move the journal files away to start from the config file",
                        j.display()
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let bad = |why: String| {
            format!(
                "{}: {why}; move it away to start from the config file",
                file.display()
            )
        };
        let saved: SavedFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if saved.format != FORMAT {
            return Err(bad(format!("format {} is not {FORMAT}", saved.format)));
        }
        let (records, mut last_file, bytes) = self.read_journal(saved.seq)?;
        let next_seq = records.last().map_or(saved.seq, |r| r.seq) + 1;
        let from_file = records.last().map_or(saved.from_file, |r| r.from_file);
        let mark = records.last().map_or(saved.mark, |r| r.mark);
        let model =
            Model::from_state_and_deltas(&saved.model.to_string(), records.into_iter().map(|r| r.delta))
                .map_err(|e| bad(format!("with its journal: {e}")))?;
        let show = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let mut file_len = 0;
        let file = match last_file.take() {
            Some((path, good)) => {
                file_len = good;
                let f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| show(&path, e))?;
                // Drop a last line cut short, so appends follow a whole line.
                f.set_len(good).map_err(|e| show(&path, e))?;
                f
            }
            None => self.new_journal(next_seq).map_err(|e| show(&self.path, e))?,
        };
        self.journal = Some(Journal {
            file,
            bytes,
            file_len,
            broken: false,
            next_seq,
            version: model.changes().version(),
            base_bytes: text.len() as u64,
            compaction: None,
        });
        self.mark = mark;
        Ok(Some(Saved {
            model,
            from_file,
            mark,
        }))
    }

    /// The records after `seq`, the last journal file with the length of its
    /// whole lines, and the bytes of all journal files.
    #[allow(clippy::type_complexity, reason = "a private helper's three answers")]
    fn read_journal(&self, seq: u64) -> Result<(Vec<Record>, Option<(PathBuf, u64)>, u64), String> {
        let files = self.journal_files()?;
        let mut records: Vec<Record> = Vec::new();
        let mut last = None;
        let mut bytes = 0;
        let mut expected = seq + 1;
        for (i, (_, path)) in files.iter().enumerate() {
            let show = path.display();
            let text = fs::read(path).map_err(|e| format!("{show}: {e}"))?;
            bytes += text.len() as u64;
            let is_last = i + 1 == files.len();
            let mut good = 0u64;
            let mut lines = text.split_inclusive(|b| *b == b'\n').enumerate().peekable();
            while let Some((n, line)) = lines.next() {
                let whole = line.ends_with(b"\n");
                let parsed = serde_json::from_slice::<Record>(line);
                let record = match parsed {
                    Ok(r) if whole => r,
                    // A crash while appending leaves the last line short.
                    _ if is_last && lines.peek().is_none() => break,
                    Ok(_) => return Err(format!("{show}: line {} has no end", n + 1)),
                    Err(e) => return Err(format!("{show}: line {}: {e}", n + 1)),
                };
                good += line.len() as u64;
                if record.seq <= seq {
                    continue;
                }
                if record.seq != expected {
                    return Err(format!(
                        "{show}: line {} is change {}, expected {expected}: the journal has a gap",
                        n + 1,
                        record.seq
                    ));
                }
                expected += 1;
                records.push(record);
            }
            if is_last {
                last = Some((path.clone(), good));
            }
        }
        Ok((records, last, bytes))
    }

    /// Creates journal file `journal-<first_seq>.log` and makes its entry
    /// durable.
    fn new_journal(&self, first_seq: u64) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.path.join(journal_name(first_seq)))?;
        sync_dir(&self.path)?;
        Ok(file)
    }

    /// Saves `model` crash-safely: as one journal record when it descends
    /// from the model saved last (its change log says what changed),
    /// otherwise whole (see the module docs).
    pub fn save(&mut self, model: &Model, from_file: bool) -> std::io::Result<()> {
        let delta = self
            .journal
            .as_ref()
            .filter(|j| !j.broken)
            .and_then(|j| model.delta_since(j.version).map(|d| (j.next_seq, d)));
        let Some((seq, delta)) = delta else {
            return self.save_whole(model, from_file);
        };
        let mut line = serde_json::to_vec(&Record {
            seq,
            from_file,
            mark: self.mark,
            delta,
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let j = self.journal.as_mut().expect("checked above");
        if let Err(e) = j.file.write_all(&line).and_then(|()| j.file.sync_data()) {
            // Nothing of a failed record may stay in front of the next one.
            if j.file
                .set_len(j.file_len)
                .and_then(|()| j.file.sync_data())
                .is_err()
            {
                j.broken = true;
            }
            return Err(e);
        }
        j.file_len += line.len() as u64;
        j.bytes += line.len() as u64;
        j.next_seq += 1;
        j.version = model.changes().version();
        if j.bytes > j.base_bytes.max(self.compact_min_bytes) {
            // The record is durable whatever happens here; a compaction that
            // fails leaves the journal growing, and the next one tries again.
            if let Err(e) = self.compact(model, from_file) {
                crate::daemon::log(format_args!(
                    "state directory {}: compacting the journal: {e}; every change stays in the journal",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }

    /// Writes the whole model as `model.json` now and starts a new journal.
    fn save_whole(&mut self, model: &Model, from_file: bool) -> std::io::Result<()> {
        let seq = match self.journal.take() {
            Some(mut j) => {
                if let Some(c) = j.compaction.take() {
                    c.join()
                        .map_err(|_| std::io::Error::other("the compaction thread panicked"))??;
                }
                j.next_seq - 1
            }
            // Not loaded: a first save, whatever journal is there is replaced.
            None => 0,
        };
        let base_bytes = write_model(&self.path, model, from_file, seq, self.mark)?;
        for (_, path) in self.journal_files().map_err(std::io::Error::other)? {
            fs::remove_file(path)?;
        }
        let file = self.new_journal(seq + 1)?;
        self.journal = Some(Journal {
            file,
            bytes: 0,
            file_len: 0,
            broken: false,
            next_seq: seq + 1,
            version: model.changes().version(),
            base_bytes,
            compaction: None,
        });
        Ok(())
    }

    /// Moves appends to a new journal file and writes `model.json` with every
    /// record so far in the background; the journal files it holds are
    /// removed once it is in place. One compaction at a time: while one runs,
    /// the journal grows.
    fn compact(&mut self, model: &Model, from_file: bool) -> std::io::Result<()> {
        let j = self.journal.as_mut().expect("a journal is open");
        if let Some(c) = j.compaction.take() {
            if !c.is_finished() {
                j.compaction = Some(c);
                return Ok(());
            }
            c.join()
                .map_err(|_| std::io::Error::other("the compaction thread panicked"))??;
        }
        let seq = j.next_seq - 1;
        let held: Vec<PathBuf> = self
            .journal_files()
            .map_err(std::io::Error::other)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let file = self.new_journal(seq + 1)?;
        let dir = self.path.clone();
        // A copy of the model shares its nodes: cheap whatever its size.
        let model = model.clone();
        let mark = self.mark;
        let j = self.journal.as_mut().expect("a journal is open");
        j.file = file;
        j.bytes = 0;
        j.file_len = 0;
        let handle = std::thread::Builder::new()
            .name("rampart-compact".into())
            .spawn(move || {
                write_model(&dir, &model, from_file, seq, mark)?;
                for path in held {
                    fs::remove_file(path)?;
                }
                sync_dir(&dir)
            })?;
        j.compaction = Some(handle);
        Ok(())
    }

    /// Waits for a compaction in flight (for tests: a stop need not wait,
    /// recovery reads whatever a cut-off compaction left).
    pub fn finish_compaction(&mut self) -> std::io::Result<()> {
        if let Some(c) = self.journal.as_mut().and_then(|j| j.compaction.take()) {
            c.join()
                .map_err(|_| std::io::Error::other("the compaction thread panicked"))??;
        }
        Ok(())
    }

    /// The API token from `file` (default: `token` in this directory),
    /// created with mode 0600 and 32 random bytes (hex) if absent. A token
    /// file others can read is refused.
    pub fn token(&self, file: Option<&Path>) -> Result<String, String> {
        let file = file.map_or_else(|| self.path.join(TOKEN), Path::to_owned);
        let show = file.display();
        if !file.exists() {
            let mut random = [0u8; 32];
            File::open("/dev/urandom")
                .and_then(|mut r| r.read_exact(&mut random))
                .map_err(|e| format!("token: reading /dev/urandom: {e}"))?;
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| format!("token file {show}: cannot create: {e}"))?;
            writeln!(f, "{hex}")
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("token file {show}: {e}"))?;
        }
        let meta = fs::metadata(&file).map_err(|e| format!("token file {show}: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "token file {show}: mode {:04o} lets others read it; chmod 600 it",
                meta.permissions().mode() & 0o777
            ));
        }
        let token = fs::read_to_string(&file).map_err(|e| format!("token file {show}: {e}"))?;
        let token = token.trim().to_owned();
        if token.len() < 16 {
            return Err(format!(
                "token file {show}: the token is shorter than 16 characters"
            ));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rampart-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_saved_model_loads_back_and_a_second_daemon_is_refused() {
        let d = dir("save");
        let mut state = StateDir::open(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(state.load(), Ok(None));
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/full.toml");
        let model = Config::load(&path).unwrap().model;
        state.save(&model, true).unwrap();
        assert_eq!(
            state.load(),
            Ok(Some(Saved {
                model: model.clone(),
                from_file: true,
                mark: None,
            }))
        );
        assert!(!d.join("model.json.tmp").exists());
        let second = StateDir::open(&d).unwrap_err();
        assert!(second.contains("in use by another rampart"), "{second}");
        drop(state);
        // Corrupt: refused with the file named, never replaced.
        fs::write(
            d.join("model.json"),
            "{\"format\":1,\"from_file\":false,\"model\":{",
        )
        .unwrap();
        let err = StateDir::open(&d).unwrap().load().unwrap_err();
        assert!(
            err.contains("model.json") && err.contains("move it away"),
            "{err}"
        );
        let _ = fs::remove_dir_all(&d);
    }

    /// The model of docs/examples/full.toml.
    fn full() -> Model {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/full.toml");
        Config::load(&path).unwrap().model
    }

    fn reopen(d: &Path) -> (StateDir, Saved) {
        let mut state = StateDir::open(d).unwrap();
        let saved = state.load().unwrap().expect("a saved model");
        (state, saved)
    }

    fn journal_lines(d: &Path) -> usize {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(JOURNAL_PREFIX)
            })
            .map(|p| fs::read_to_string(p).unwrap().lines().count())
            .sum()
    }

    /// Changes of every kind of object, each saved as one journal record.
    fn change(m: &mut Model, i: usize) {
        use crate::model::{InterfaceSpec, RuleSpec, Scalar};
        let vpc = m.vpcs().next().unwrap().name.clone();
        let group = m.groups().find(|g| g.name != "default").unwrap().name.clone();
        match i % 3 {
            0 => {
                let rule = RuleSpec {
                    direction: "ingress".into(),
                    protocol: Scalar::from("tcp"),
                    ports: Some(Scalar::Int(20000 + i as i64)),
                    ..RuleSpec::default()
                };
                m.add_rules(&vpc, &group, &[rule]).unwrap();
            }
            1 => {
                m.create_interface(&InterfaceSpec {
                    vpc: vpc.clone(),
                    name: format!("j{i}"),
                    addresses: vec![format!("198.19.{}.{}", i / 250, i % 250 + 1)],
                    groups: Some(vec![group]),
                    ..InterfaceSpec::default()
                })
                .unwrap();
            }
            _ => {
                let name = format!("j{}", i - 1);
                m.delete_interface(&vpc, &name).unwrap();
            }
        }
    }

    #[test]
    fn the_store_mark_is_kept_with_the_model_and_its_last_record() {
        let d = dir("mark");
        let mut state = StateDir::open(&d).unwrap();
        let model = full();
        let first = StoreMark {
            revision: 7,
            meta_revision: 6,
            epoch: 1,
        };
        state.set_mark(Some(first));
        state.save(&model, false).unwrap();
        drop(state);
        assert_eq!(reopen(&d).1.mark, Some(first), "from model.json");
        let (mut state, saved) = reopen(&d);
        let mut model = saved.model;
        change(&mut model, 0);
        let second = StoreMark {
            revision: 9,
            meta_revision: 9,
            epoch: 1,
        };
        state.set_mark(Some(second));
        state.save(&model, false).unwrap();
        drop(state);
        assert_eq!(journal_lines(&d), 1);
        let (_, saved) = reopen(&d);
        assert_eq!(
            (saved.mark, saved.model),
            (Some(second), model),
            "from the journal"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn changes_are_journaled_one_record_each_and_recovered_in_order() {
        let d = dir("journal");
        let mut state = StateDir::open(&d).unwrap();
        let mut model = full();
        state.save(&model, true).unwrap();
        let whole = fs::read(d.join("model.json")).unwrap();
        for i in 0..30 {
            change(&mut model, i);
            state.save(&model, false).unwrap();
            model.trim_changes();
        }
        assert_eq!(
            fs::read(d.join("model.json")).unwrap(),
            whole,
            "model.json is not rewritten"
        );
        assert_eq!(journal_lines(&d), 30);
        drop(state);
        let (mut state, saved) = reopen(&d);
        assert_eq!(
            saved,
            Saved {
                model: model.clone(),
                from_file: false,
                mark: None,
            }
        );

        // Appends go on after what was read (the loaded model is the one
        // changed, as in the daemon); a record cut short at the end (a crash
        // while appending) is dropped, the ones before are kept.
        let mut model = saved.model;
        change(&mut model, 30);
        state.save(&model, false).unwrap();
        drop(state);
        let files = StateDir::open(&d).unwrap().journal_files().unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        let path = files[0].1.clone();
        assert_eq!(journal_lines(&d), 31);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":99,\"from_file\":fal").unwrap();
        drop(f);
        let (mut state, saved) = reopen(&d);
        assert_eq!(saved.model, model);
        let mut model = saved.model;
        change(&mut model, 31);
        state.save(&model, false).unwrap();
        drop(state);
        assert_eq!(reopen(&d).1.model, model, "the next record follows a whole line");

        // A bad line before the end is an error naming the file, never skipped.
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replacen("\"seq\"", "\"sequence\"", 1)).unwrap();
        let err = StateDir::open(&d).unwrap().load().unwrap_err();
        assert!(
            err.contains(&*path.to_string_lossy()) && err.contains("line 1"),
            "{err}"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_journal_outgrowing_the_model_is_compacted_and_nothing_is_lost() {
        let d = dir("compact");
        let mut state = StateDir::open(&d).unwrap();
        state.set_compact_min_bytes(0);
        let mut model = full();
        state.save(&model, true).unwrap();
        let base = fs::metadata(d.join("model.json")).unwrap().len();
        let mut compacted = false;
        for i in 0..300 {
            change(&mut model, i);
            state.save(&model, false).unwrap();
            model.trim_changes();
            state.finish_compaction().unwrap();
            let text = fs::read_to_string(d.join("model.json")).unwrap();
            let saved: SavedFile = serde_json::from_str(&text).unwrap();
            compacted |= saved.seq > 0;
        }
        assert!(compacted, "the journal was compacted into model.json");
        // The journal stays within about one model's size.
        let journal = state.journal.as_ref().unwrap().bytes;
        let model_bytes = base.max(fs::metadata(d.join("model.json")).unwrap().len());
        assert!(
            journal <= 2 * model_bytes,
            "{journal} bytes of journal, {model_bytes} of model"
        );
        drop(state);
        let (_, saved) = reopen(&d);
        assert_eq!(saved.model, model);
        assert!(!saved.from_file);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_model_that_does_not_descend_is_saved_whole_and_the_journal_dropped() {
        let d = dir("whole");
        let mut state = StateDir::open(&d).unwrap();
        let mut model = full();
        state.save(&model, true).unwrap();
        change(&mut model, 0);
        state.save(&model, false).unwrap();
        assert_eq!(journal_lines(&d), 1);
        // A reloaded file: a model of its own.
        let fresh = full();
        state.save(&fresh, true).unwrap();
        assert_eq!(journal_lines(&d), 0);
        drop(state);
        assert_eq!(
            reopen(&d).1,
            Saved {
                model: fresh,
                from_file: true,
                mark: None,
            }
        );
        // A journal without model.json is refused.
        fs::remove_file(d.join("model.json")).unwrap();
        let err = StateDir::open(&d).unwrap().load().unwrap_err();
        assert!(err.contains("a journal without model.json"), "{err}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_token_is_created_private_and_a_readable_one_is_refused() {
        let d = dir("token");
        let state = StateDir::open(&d).unwrap();
        let t = state.token(None).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(
            fs::metadata(d.join("token")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(state.token(None).unwrap(), t, "kept across starts");
        fs::set_permissions(d.join("token"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(state.token(None).unwrap_err().contains("chmod 600"));
        let _ = fs::remove_dir_all(&d);
    }
}
