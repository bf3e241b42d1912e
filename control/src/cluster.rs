//! The `[cluster]` table: the fleet store (etcd) that holds the model for
//! every appliance of a fleet. Without it an appliance keeps its model in its
//! state directory alone. Documented for operators in `docs/config.md` and
//! `docs/operating.md`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::ModelError;

/// TLS towards etcd: the CA that signed the members' certificates, and this
/// node's client certificate and key when the members require one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the members' certificates carry, when it is not the
    /// endpoint's host.
    pub domain: Option<String>,
}

/// The `[cluster]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// etcd client URLs, e.g. `http://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Every key of this fleet starts with it.
    pub prefix: String,
    /// This node's name, unique in the fleet (default: the host name).
    pub node: String,
    pub tls: Option<ClusterTls>,
    /// etcd authentication: a user and a file holding its password.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Seconds a node's record outlives the node (its lease's TTL).
    pub lease_ttl_s: u32,
    /// Milliseconds to wait for etcd's answer to one request.
    pub request_timeout_ms: u32,
}

/// The key prefix when the table names none.
pub const DEFAULT_PREFIX: &str = "/rampart/";

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            endpoints: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            node: String::new(),
            tls: None,
            user: None,
            password_file: None,
            lease_ttl_s: 5,
            request_timeout_ms: 5000,
        }
    }
}

impl Cluster {
    /// This node's name: the table's, or the host's.
    pub fn node_name(&self) -> String {
        if !self.node.is_empty() {
            return self.node.clone();
        }
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "rampart".to_owned())
    }

    /// Checks every field; returns every problem found.
    pub fn validate(&self) -> Vec<ModelError> {
        let mut errs = Vec::new();
        let bad = |field: &'static str, msg: String| ModelError::field("cluster", field, msg);
        if self.endpoints.is_empty() {
            errs.push(bad(
                "endpoints",
                "is required: the etcd client URLs, e.g. [\"http://127.0.0.1:2379\"]".into(),
            ));
        }
        for e in &self.endpoints {
            let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://"));
            let ok = rest.is_some_and(|r| {
                r.rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
            });
            if !ok {
                errs.push(bad(
                    "endpoints",
                    format!("{e:?} is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)"),
                ));
            }
            if e.starts_with("https://") && self.tls.is_none() {
                errs.push(bad(
                    "tls",
                    format!("endpoint {e:?} is https: give [cluster.tls] with the CA (ca = FILE)"),
                ));
            }
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') || self.prefix.len() < 2 {
            errs.push(bad(
                "prefix",
                format!(
                    "{:?} must start and end with '/', e.g. \"/rampart/\"",
                    self.prefix
                ),
            ));
        }
        if !self.node.is_empty()
            && (self.node.len() > 64
                || !self
                    .node
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            errs.push(bad(
                "node",
                format!("{:?} must be 1-64 letters, digits, '-', '_' or '.'", self.node),
            ));
        }
        if self.user.is_some() != self.password_file.is_some() {
            errs.push(bad(
                "password_file",
                "user and password_file go together: give both or neither".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                errs.push(bad(
                    "tls",
                    "cert and key go together: give both or neither".into(),
                ));
            }
        }
        if !(2..=600).contains(&self.lease_ttl_s) {
            errs.push(bad(
                "lease_ttl_s",
                format!("{} is out of range 2-600", self.lease_ttl_s),
            ));
        }
        if !(100..=60_000).contains(&self.request_timeout_ms) {
            errs.push(bad(
                "request_timeout_ms",
                format!("{} is out of range 100-60000", self.request_timeout_ms),
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(c: &Cluster) -> Vec<String> {
        c.validate().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_valid_table_passes_and_each_bad_field_is_named() {
        let good = Cluster {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            ..Cluster::default()
        };
        assert!(fields(&good).is_empty(), "{:?}", fields(&good));
        let cases: [(Cluster, &str); 6] = [
            (Cluster::default(), "endpoints"),
            (
                Cluster {
                    endpoints: vec!["127.0.0.1:2379".into()],
                    ..Cluster::default()
                },
                "endpoints",
            ),
            (
                Cluster {
                    prefix: "rampart".into(),
                    ..good.clone()
                },
                "prefix",
            ),
            (
                Cluster {
                    node: "a b".into(),
                    ..good.clone()
                },
                "node",
            ),
            (
                Cluster {
                    user: Some("root".into()),
                    ..good.clone()
                },
                "password_file",
            ),
            (
                Cluster {
                    endpoints: vec!["https://10.0.0.1:2379".into()],
                    ..good.clone()
                },
                "tls",
            ),
        ];
        for (c, field) in cases {
            let errs = fields(&c);
            assert!(errs.iter().any(|e| e.contains(field)), "{field}: {errs:?}");
        }
    }
}
