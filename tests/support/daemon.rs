//! The `rampart run` process under test, started in the appliance's namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The `rampart` binary built from control/src/main.rs for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_rampart-under-test");

/// Runs `rampart run -c config` in namespace `ns` to its end (for
/// configurations it must refuse).
pub fn run_to_end(ns: &str, config: &Path) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, BIN, "run", "-c"])
        .arg(config)
        .output()
        .expect("run rampart")
}

/// A running `rampart run`; killed (SIGKILL) if still running when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
}

impl Daemon {
    /// Writes `config` to a file in `dir` and starts `rampart run` on it in
    /// namespace `ns`; returns once it prints that it is running.
    pub fn start(ns: &str, dir: &Path, config: &str) -> Daemon {
        Daemon::start_within(ns, dir, config, Duration::from_secs(10))
    }

    /// [`Daemon::start`] for a model that takes long to load (this is a
    /// debug build).
    pub fn start_within(ns: &str, dir: &Path, config: &str, timeout: Duration) -> Daemon {
        Daemon::launch(ns, dir, config, timeout, &[])
    }

    /// [`Daemon::start`] with a soft open-file limit of `soft` (the hard one
    /// unchanged), as a service manager's default would give it.
    pub fn start_with_open_files(ns: &str, dir: &Path, config: &str, soft: u64) -> Daemon {
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("getrlimit");
        let limit = format!("--nofile={soft}:{hard}");
        Daemon::launch(
            ns,
            dir,
            config,
            Duration::from_secs(10),
            &["prlimit", &limit, "--"],
        )
    }

    /// Starts `rampart run` through `wrapper` (a command that execs the
    /// rest, so the process id stays rampart's).
    fn launch(ns: &str, dir: &Path, config: &str, timeout: Duration, wrapper: &[&str]) -> Daemon {
        std::fs::create_dir_all(dir).expect("state dir");
        std::fs::write(dir.join("rampart.toml"), config).expect("write config");
        let out = std::fs::File::create(dir.join("stdout")).expect("stdout file");
        let err = std::fs::File::create(dir.join("stderr")).expect("stderr file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(wrapper)
            .args([BIN, "run", "-c"])
            .arg(dir.join("rampart.toml"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn rampart");
        let mut d = Daemon {
            child: Some(child),
            dir: dir.to_owned(),
        };
        d.wait_for_output("running", timeout);
        d
    }

    /// The daemon's process id (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its resident memory, kB.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("rampart.toml")
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Waits until standard output or error contains `text`; panics with both
    /// (and the exit status, if it ended) after `timeout`.
    pub fn wait_for_output(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.stdout().contains(text) || self.stderr().contains(text) {
                return;
            }
            let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if status.is_some() || start.elapsed() > timeout {
                panic!(
                    "rampart did not print {text:?} (exit: {status:?})\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("running");
        kill(Pid::from_raw(child.id() as i32), signal).expect("kill");
    }

    /// Replaces the config file and sends SIGHUP; returns once the reload is
    /// logged (`reloaded` or `refused`).
    pub fn reload(&mut self, config: &str) {
        let before = self.stderr().matches("reload").count();
        std::fs::write(self.config_path(), config).expect("write config");
        self.signal(Signal::SIGHUP);
        let start = Instant::now();
        while self.stderr().matches("reload").count() == before {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no reload logged:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the process to end.
    pub fn stop(&mut self, signal: Signal) -> ExitStatus {
        self.signal(signal);
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("rampart did not stop within 10 s of {signal}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
