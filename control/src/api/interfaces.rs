//! `/v1/vpcs/{vpc}/interfaces`: protected interfaces and their groups.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde_json::Value;

use super::types::{Created, Enforced, InterfaceList, InterfaceView, Nothing};
use super::{vpc_id, Answer, Api, ApiError, Body};
use crate::model::{Interface, InterfaceSpec, Model};

impl InterfaceView {
    /// `i` as the API shows it.
    pub fn of(m: &Model, i: &Interface) -> InterfaceView {
        InterfaceView {
            id: i.id.to_string(),
            name: i.name.clone(),
            vpc: m.vpc(i.vpc).map(|v| v.name.clone()),
            addresses: i.addresses.clone(),
            mac: i.mac.map(|x| x.to_string()),
            groups: m.interface_groups(i).map(|g| g.name.clone()).collect(),
            bare_metal: i.bare_metal,
        }
    }
}

type Named = Path<(String, String)>;

pub async fn list(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer<InterfaceList> {
    api.read(|c| {
        let m = &c.config.model;
        let id = vpc_id(m, &vpc)?;
        Ok(InterfaceList {
            interfaces: m
                .interfaces()
                .filter(|i| i.vpc == id)
                .map(|i| InterfaceView::of(m, i))
                .collect(),
        })
    })
    .await
}

pub async fn show(State(api): State<Arc<Api>>, Path((vpc, name)): Named) -> Answer<InterfaceView> {
    api.read(|c| {
        let m = &c.config.model;
        let id = vpc_id(m, &vpc)?;
        let i = m
            .interface_by_name(id, &name)
            .ok_or_else(|| ApiError::not_found(&format!("interface {name:?} in vpc {vpc:?}")))?;
        Ok(InterfaceView::of(m, i))
    })
    .await
}

pub async fn create(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(body): Body<Value>,
) -> Answer<Enforced<Created>> {
    api.create_in(&vpc, body, |m, spec: &InterfaceSpec| m.create_interface(spec))
        .await
}

pub async fn update(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Named,
    Body(body): Body<Value>,
) -> Answer<Enforced> {
    api.update_in(&vpc, &name, body, |m, vpc, name, spec: &InterfaceSpec| {
        m.update_interface(vpc, name, spec)
    })
    .await
}

pub async fn delete(State(api): State<Arc<Api>>, Path((vpc, name)): Named) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.delete_interface(vpc, &name).map(|()| Nothing {})?)
    })
    .await
}

pub async fn set_groups(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Named,
    Body(groups): Body<Vec<String>>,
) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.set_interface_groups(vpc, &name, &groups).map(|()| Nothing {})?)
    })
    .await
}

pub async fn bind(
    State(api): State<Arc<Api>>,
    Path((vpc, name, sg)): Path<(String, String, String)>,
) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.bind_group(vpc, &name, &sg).map(|()| Nothing {})?)
    })
    .await
}

pub async fn unbind(
    State(api): State<Arc<Api>>,
    Path((vpc, name, sg)): Path<(String, String, String)>,
) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| {
        Ok(m.unbind_group(vpc, &name, &sg).map(|()| Nothing {})?)
    })
    .await
}
