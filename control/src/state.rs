//! The state directory: the model as last acknowledged, kept crash-safely, and
//! the API's bearer token.
//!
//! Files:
//! - `model.json`: `{"format":1,"from_file":BOOL,"model":{...}}`, the whole
//!   model exactly (ids included). Written to `model.json.tmp`, fsynced,
//!   renamed over `model.json`, then the directory fsynced: after a crash at
//!   any moment the file holds either the previous model or the new one, never
//!   a mix. `from_file` says whether the model is still the one the config
//!   file gave (no change through the API since).
//! - `token`: the API's bearer token, created with mode 0600 on first start.
//! - `lock`: held (flock) while a daemon uses the directory, so two daemons
//!   cannot write the same state.
//!
//! Which model wins at start: a `model.json` in the state directory, always
//! (it holds changes acknowledged through the API, which the file does not);
//! the config file's model is used only when the state directory has none.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;

use crate::model::Model;

const FORMAT: u32 = 1;
const MODEL: &str = "model.json";
const TOKEN: &str = "token";

/// An open state directory (locked while this value lives).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: Flock<File>,
}

/// What `model.json` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub model: Model,
    /// The model is the config file's, unchanged through the API.
    pub from_file: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFile {
    format: u32,
    from_file: bool,
    model: serde_json::Value,
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
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved model, or `None` when there is none yet. A file that cannot
    /// be read back is an error (never silently replaced).
    pub fn load(&self) -> Result<Option<Saved>, String> {
        let file = self.path.join(MODEL);
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
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
        let model = Model::from_state(&saved.model.to_string()).map_err(bad)?;
        Ok(Some(Saved {
            model,
            from_file: saved.from_file,
        }))
    }

    /// Saves `model` crash-safely (see the module docs).
    pub fn save(&self, model: &Model, from_file: bool) -> std::io::Result<()> {
        let tmp = self.path.join(format!("{MODEL}.tmp"));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        write!(
            f,
            "{{\"format\":{FORMAT},\"from_file\":{from_file},\"model\":{}}}",
            model.to_state()
        )?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.path.join(MODEL))?;
        File::open(&self.path)?.sync_all()
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
        let state = StateDir::open(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(state.load(), Ok(None));
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/full.toml");
        let model = Config::load(&path).unwrap().model;
        state.save(&model, true).unwrap();
        assert_eq!(
            state.load(),
            Ok(Some(Saved {
                model: model.clone(),
                from_file: true
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
