//! `rampart ctl store push|pull`: the fleet store itself, reached directly
//! (no appliance needed), as the config file's `[cluster]` names it.

use std::path::Path;

use serde_json::json;

use super::client::Failure;
use super::Output;
use crate::config::{Config, Summary};
use crate::state::StateDir;
use crate::store::{Store, StoreError};

/// The store the config file's `[cluster]` names.
fn store_of(config: &Path) -> Result<(Store, Config), Failure> {
    let c = Config::load(config).map_err(|e| Failure::Local(e.to_string()))?;
    let cluster = c.cluster.clone().ok_or_else(|| {
        Failure::Local(format!(
            "{}: no [cluster] table: it names the fleet store (docs/config.md)",
            config.display()
        ))
    })?;
    // Changes it writes name `rampart ctl` on the node's host, not the node.
    let cluster = crate::cluster::Cluster {
        node: format!("ctl.{}", cluster.node_name()),
        ..cluster
    };
    Ok((Store::new(&cluster), c))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("starting the store client: {e}")))
}

fn failed(e: StoreError) -> Failure {
    Failure::Local(e.to_string())
}

/// Replaces the store's model with `source`'s (a state directory or a
/// config file).
pub fn push(source: &Path, config: &Path) -> Result<Output, Failure> {
    let (store, cfg) = store_of(config)?;
    let (model, settings) = if source.is_dir() {
        let mut dir = StateDir::open(source).map_err(Failure::Local)?;
        let saved = dir
            .load()
            .map_err(Failure::Local)?
            .ok_or_else(|| Failure::Local(format!("{}: no model.json in it", source.display())))?;
        (saved.model, cfg.settings)
    } else {
        let c = Config::load(source).map_err(|e| Failure::Local(e.to_string()))?;
        (c.model, c.settings)
    };
    let mark = runtime()?.block_on(async {
        let mut last = None;
        for _ in 0..crate::api::MAX_ATTEMPTS {
            let now = store.load(None).await.map_err(failed)?;
            let expect = now.as_ref().map(|l| l.mark.meta_revision);
            let epoch = now.as_ref().map(|l| l.mark.epoch);
            match store.replace(expect, epoch, &model, &settings).await {
                Err(e @ StoreError::Conflict { .. }) => last = Some(e),
                other => return other.map_err(failed),
            }
        }
        Err(failed(last.expect("at least one attempt")))
    })?;
    let summary = Summary::of(&model).to_string();
    let text = format!(
        "pushed {} into {} ({summary}): revision {}\n",
        source.display(),
        store.keys.prefix(),
        mark.revision
    );
    Ok(Output::ok(
        json!({"revision": mark.revision, "epoch": mark.epoch, "summary": summary}),
        text,
    ))
}

/// Writes the store's model into the state directory `dest`.
pub fn pull(dest: &Path, config: &Path) -> Result<Output, Failure> {
    let (store, _) = store_of(config)?;
    let loaded = runtime()?
        .block_on(store.load(None))
        .map_err(failed)?
        .ok_or_else(|| {
            Failure::Local(format!(
                "the fleet store holds no model under {}",
                store.keys.prefix()
            ))
        })?;
    let mut dir = StateDir::open(dest).map_err(Failure::Local)?;
    dir.set_mark(Some(loaded.mark));
    dir.save(&loaded.model, false)
        .map_err(|e| Failure::Local(format!("{}: {e}", dest.display())))?;
    let summary = Summary::of(&loaded.model).to_string();
    let text = format!(
        "pulled revision {} ({summary}) into {}\n",
        loaded.mark.revision,
        dest.display()
    );
    Ok(Output::ok(
        json!({"revision": loaded.mark.revision, "summary": summary}),
        text,
    ))
}
