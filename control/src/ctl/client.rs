//! The HTTP side of `rampart ctl`: one call, its answer read as a type of
//! the API's contract.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::CtlArgs;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad input here, or the appliance cannot be reached (exit 2).
    Local(String),
    /// The appliance answered with an error (exit 1): its status and body.
    Refused(u16, Value),
}

/// The HTTP methods the API has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// An answer: as the API wrote it (printed by `--json`) and as its type.
#[derive(Debug)]
pub struct Answer<T> {
    pub json: Value,
    pub body: T,
}

/// The appliance's API.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    url: String,
    token: String,
    /// Changes ask to be answered once the whole fleet enforces them.
    wait_fleet: bool,
}

/// What a path segment keeps as it is (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` as one path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The path of `vpc`.
pub fn vpc_path(vpc: &str) -> String {
    format!("/v1/vpcs/{}", seg(vpc))
}

impl Client {
    pub fn new(args: &CtlArgs) -> Result<Client, Failure> {
        let token = std::fs::read_to_string(&args.token_file)
            .map_err(|e| Failure::Local(format!("--token-file {}: {e}", args.token_file)))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Client {
            agent,
            url: args.url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            wait_fleet: args.wait_fleet,
        })
    }

    /// `GET path`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>, Failure> {
        self.call(Method::Get, path, None::<&()>)
    }

    /// One request; a `200` answer read as `T`, any other as [`Failure::Refused`].
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Answer<T>, Failure> {
        let mut url = format!("{}{path}", self.url);
        if self.wait_fleet && !matches!(method, Method::Get) {
            url.push_str(if path.contains('?') {
                "&wait=fleet"
            } else {
                "?wait=fleet"
            });
        }
        let auth = format!("Bearer {}", self.token);
        let body = match body {
            Some(b) => serde_json::to_string(b).map_err(|e| Failure::Local(format!("the request: {e}")))?,
            None => String::new(),
        };
        let sent = match method {
            Method::Get => self.agent.get(&url).header("Authorization", &auth).call(),
            Method::Delete => self.agent.delete(&url).header("Authorization", &auth).call(),
            Method::Put => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send(body.as_str()),
            Method::Post => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send(body.as_str()),
        };
        let mut resp = sent.map_err(|e| {
            Failure::Local(format!(
                "cannot reach rampart at {}: {e} (is `rampart run` running? see --url)",
                self.url
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| Failure::Local(format!("reading the answer: {e}")))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status != 200 {
            return Err(Failure::Refused(status, json));
        }
        let body = serde_json::from_value(json.clone()).map_err(|e| {
            Failure::Local(format!(
                "{path}: the appliance's answer is not what this rampart ctl reads ({e}); are both the same version?"
            ))
        })?;
        Ok(Answer { json, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_keeps_unreserved_bytes_and_encodes_the_rest() {
        assert_eq!(seg("web-1_a.b~c"), "web-1_a.b~c");
        assert_eq!(seg("a b/c?d%"), "a%20b%2Fc%3Fd%25");
        assert_eq!(seg("é"), "%C3%A9");
    }
}
