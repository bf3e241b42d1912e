//! A real Prometheus server (Debian's `prometheus` package) in a test's
//! namespace.

use serde_json::Value;

use super::netns;

/// Scrapes the appliance's API address every second.
pub const SCRAPE_EVERY_SECOND: &str = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: rampart\n    static_configs:\n      - targets: ['127.0.0.1:9740']\n";

/// Starts a real Prometheus server in namespace `ns` scraping the API's
/// `/metrics` every second; killed when dropped.
pub struct Prometheus {
    child: std::process::Child,
    pub dir: std::path::PathBuf,
}

impl Prometheus {
    /// Starts it with `config` (YAML) as its configuration file, in a
    /// `prometheus` directory under `dir` (rule files it names go there too).
    pub fn start(ns: &str, dir: &std::path::Path, config: &str) -> Prometheus {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "prometheus"])
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log"))
            .spawn()
            .expect("prometheus (Debian package prometheus, installed by scripts/install-deps.sh)");
        Prometheus { child, dir }
    }

    /// The value of an instant query that returns one series, once it does.
    pub fn query(&self, ns: &str, promql: &str) -> Option<f64> {
        self.query_all(ns, promql).and_then(|v| v.first().copied())
    }

    /// The values of every series an instant query returns (`None` on error).
    pub fn query_all(&self, ns: &str, promql: &str) -> Option<Vec<f64>> {
        let url = format!(
            "http://127.0.0.1:9090/api/v1/query?query={}",
            promql.bytes().map(|b| format!("%{b:02X}")).collect::<String>()
        );
        netns::in_ns(ns, move || {
            let mut resp = ureq::get(&url).call().ok()?;
            let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
            if v["status"] != "success" {
                return None;
            }
            v["data"]["result"]
                .as_array()?
                .iter()
                .map(|r| r["value"][1].as_str().and_then(|x| x.parse().ok()))
                .collect()
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
