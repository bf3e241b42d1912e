//! Where each object of the model lives in the fleet store, and how it is
//! written.
//!
//! Under the `[cluster]` prefix `P`:
//! - `P meta`: [`Meta`], the quotas and next ids, and the `epoch` the object
//!   keys are under. Every change of the model writes it, in the same
//!   transaction as its objects, so its revision is the revision of the last
//!   change and a transaction conditioned on it is conditioned on the whole
//!   model read at that revision.
//! - `P model/<epoch>/vpc/<id>`, `.../group/<id>` (with its rules),
//!   `.../interface/<id>`, `.../prefix_list/<id>`: one key per object, its
//!   JSON exactly as the state directory stores it; `P model/<epoch>/settings`:
//!   the `[settings]` table.
//! - `P nodes/<name>`: [`NodeRecord`], bound to the node's lease.
//!
//! A change small enough for one transaction writes its objects under the
//! current epoch. A larger one (a whole model pushed or replaced) writes the
//! new model under a new epoch in as many transactions as it needs, then
//! switches `meta` to it in one last transaction, so no reader ever sees
//! half of it; the old epoch's keys are removed afterwards.

use serde::{Deserialize, Serialize};

use crate::model::{Changed, GroupId, InterfaceId, NextIds, PrefixListId, Quotas, VpcId};

/// The format of the values written.
pub const FORMAT: u32 = 1;

/// The `meta` key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub format: u32,
    pub epoch: u64,
    pub quotas: Quotas,
    pub next: NextIds,
    /// The node (or `rampart ctl`) that wrote the last change.
    pub writer: String,
    /// The id of that change, unique to it.
    #[serde(default)]
    pub change: String,
}

/// What a node publishes about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// The store revision this node enforces (every worker runs it).
    pub revision: i64,
    /// Its snapshot generation.
    pub generation: u64,
    /// The node's API address.
    pub api: String,
    /// rampart's version.
    pub version: String,
}

/// A key below the prefix, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    Meta,
    Settings {
        epoch: u64,
    },
    Object {
        epoch: u64,
        object: Changed,
    },
    Node(&'a str),
    /// Not one of rampart's.
    Other,
}

/// The key layout of one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn meta(&self) -> String {
        format!("{}meta", self.prefix)
    }

    /// Every key of `epoch`'s objects starts with it.
    pub fn epoch(&self, epoch: u64) -> String {
        format!("{}model/{epoch:020}/", self.prefix)
    }

    /// Every model key of every epoch starts with it.
    pub fn models(&self) -> String {
        format!("{}model/", self.prefix)
    }

    pub fn settings(&self, epoch: u64) -> String {
        format!("{}settings", self.epoch(epoch))
    }

    pub fn object(&self, epoch: u64, object: Changed) -> String {
        let (kind, id) = match object {
            Changed::Vpc(VpcId(id)) => ("vpc", id),
            Changed::Group(GroupId(id)) => ("group", id),
            Changed::Interface(InterfaceId(id)) => ("interface", id),
            Changed::PrefixList(PrefixListId(id)) => ("prefix_list", id),
        };
        format!("{}{kind}/{id:010}", self.epoch(epoch))
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.prefix)
    }

    /// What `key` is.
    pub fn parse<'a>(&self, key: &'a str) -> Key<'a> {
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
            return Key::Other;
        };
        if rest == "meta" {
            return Key::Meta;
        }
        if let Some(name) = rest.strip_prefix("nodes/") {
            return Key::Node(name);
        }
        let Some(rest) = rest.strip_prefix("model/") else {
            return Key::Other;
        };
        let Some((epoch, rest)) = rest.split_once('/') else {
            return Key::Other;
        };
        let Ok(epoch) = epoch.parse::<u64>() else {
            return Key::Other;
        };
        if rest == "settings" {
            return Key::Settings { epoch };
        }
        let Some((kind, id)) = rest.split_once('/') else {
            return Key::Other;
        };
        let Ok(id) = id.parse::<u32>() else {
            return Key::Other;
        };
        let object = match kind {
            "vpc" => Changed::Vpc(VpcId(id)),
            "group" => Changed::Group(GroupId(id)),
            "interface" => Changed::Interface(InterfaceId(id)),
            "prefix_list" => Changed::PrefixList(PrefixListId(id)),
            _ => return Key::Other,
        };
        Key::Object { epoch, object }
    }
}

/// The end of the range of keys starting with `prefix`.
pub fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_back_as_what_it_names() {
        let k = Keys::new("/fleet/a/");
        let objects = [
            Changed::Vpc(VpcId(1)),
            Changed::Group(GroupId(4_000_000_000)),
            Changed::Interface(InterfaceId(100_000)),
            Changed::PrefixList(PrefixListId(7)),
        ];
        for o in objects {
            assert_eq!(k.parse(&k.object(3, o)), Key::Object { epoch: 3, object: o });
            assert!(k.object(3, o).starts_with(&k.epoch(3)));
            assert!(k.object(3, o).starts_with(&k.models()));
        }
        assert_eq!(k.parse(&k.meta()), Key::Meta);
        assert_eq!(k.parse(&k.settings(9)), Key::Settings { epoch: 9 });
        assert_eq!(k.parse(&k.node("n1")), Key::Node("n1"));
        assert_eq!(k.parse("/fleet/b/meta"), Key::Other, "another prefix");
        assert_eq!(k.parse("/fleet/a/model/x/vpc/1"), Key::Other);
        assert!(k.epoch(2) < k.epoch(10), "epochs sort by number");
        assert_eq!(range_end("/a/"), b"/a0".to_vec());
    }
}
