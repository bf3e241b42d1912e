//! A client of the running appliance's REST API, from inside its namespace
//! (the API listens on the namespace's loopback).

use std::path::Path;
use std::time::Duration;

use rampart_control::api::types::{Enforced, ErrorBody, Nothing};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::netns::in_ns;

/// The API of a daemon started with `--state-dir <dir>/state`.
#[derive(Debug, Clone)]
pub struct Client {
    ns: String,
    pub token: String,
}

/// An answer as it came: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// The default address (`rampart run --listen`).
pub const BASE: &str = "http://127.0.0.1:9740";

impl Client {
    pub fn new(ns: &str, dir: &Path) -> Client {
        let token = std::fs::read_to_string(dir.join("state/token")).expect("the daemon wrote its token");
        Client {
            ns: ns.to_owned(),
            token: token.trim().to_owned(),
        }
    }

    /// One request with `token` (none: no Authorization header); the status
    /// and the body (JSON, or a string if it is not JSON).
    pub fn raw(&self, method: &str, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (u16, Value) {
        self.try_raw(method, path, token, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Client::raw`], with transport errors (the daemon is down) as `Err`.
    pub fn try_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), String> {
        let answer = self.try_exchange(method, path, token, body)?;
        let body = serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body));
        Ok((answer.status, body))
    }

    /// One request; the answer exactly as it came.
    pub fn exchange(&self, method: &str, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Exchange {
        self.try_exchange(method, path, token, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn try_exchange(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Exchange, String> {
        let url = format!("{BASE}{path}");
        let auth = token.map(|t| format!("Bearer {t}"));
        let method = method.to_owned();
        in_ns(&self.ns, move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into();
            macro_rules! with_auth {
                ($req:expr) => {{
                    let r = $req;
                    match &auth {
                        Some(a) => r.header("Authorization", a),
                        None => r,
                    }
                }};
            }
            let body = body.unwrap_or_default();
            let resp = match method.as_str() {
                "GET" => with_auth!(agent.get(&url)).call(),
                "DELETE" => with_auth!(agent.delete(&url)).call(),
                "POST" => with_auth!(agent.post(&url))
                    .header("Content-Type", "application/json")
                    .send(&body[..]),
                "PUT" => with_auth!(agent.put(&url))
                    .header("Content-Type", "application/json")
                    .send(&body[..]),
                "PATCH" => with_auth!(agent.patch(&url))
                    .header("Content-Type", "application/json")
                    .send(&body[..]),
                other => panic!("method {other}"),
            };
            let mut resp = resp.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .unwrap_or_default();
            Ok(Exchange {
                status,
                content_type,
                body,
            })
        })
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.raw("GET", path, Some(&self.token), None)
    }

    pub fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.raw(
            method,
            path,
            Some(&self.token),
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.raw("DELETE", path, Some(&self.token), None)
    }

    /// `GET path`, which must answer 200 with a `T` of the API's contract.
    pub fn read<T: DeserializeOwned>(&self, path: &str) -> T {
        typed(self.get(path), path)
    }

    /// A request with `body` that must answer 200 with a `T`.
    pub fn typed_send<T: DeserializeOwned>(&self, method: &str, path: &str, body: &Value) -> T {
        typed(self.send(method, path, body), path)
    }

    /// A change (`body` none: no body), which must answer 200: enforced.
    pub fn change<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<&Value>) -> Enforced<T> {
        let answer = match body {
            Some(b) => self.send(method, path, b),
            None => self.raw(method, path, Some(&self.token), None),
        };
        let enforced: Enforced<T> = typed(answer, path);
        assert!(enforced.enforced, "{method} {path}: 200 means enforced");
        enforced
    }

    /// [`Client::change`] of an answer with nothing of its own.
    pub fn changed(&self, method: &str, path: &str, body: Option<&Value>) -> Enforced<Nothing> {
        self.change(method, path, body)
    }

    /// A request that must be refused: its status and error.
    pub fn refused(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, ErrorBody) {
        let (status, answer) = match body {
            Some(b) => self.send(method, path, b),
            None => self.raw(method, path, Some(&self.token), None),
        };
        assert_ne!(status, 200, "{method} {path} was not refused: {answer}");
        let error = serde_json::from_value(answer.clone())
            .unwrap_or_else(|e| panic!("{method} {path}: {answer} is not an error body: {e}"));
        (status, error)
    }
}

/// A 200 answer read as `T`.
fn typed<T: DeserializeOwned>((status, answer): (u16, Value), path: &str) -> T {
    assert_eq!(status, 200, "{path}: {answer}");
    serde_json::from_value(answer.clone())
        .unwrap_or_else(|e| panic!("{path}: {answer} does not read as the contract's type: {e}"))
}
