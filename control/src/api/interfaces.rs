//! `/v1/vpcs/{vpc}/interfaces`: protected interfaces and their groups. Listing,
//! showing, creating, replacing and deleting are [`super::named`]'s handlers.

use std::sync::Arc;

use super::named::Named;
use super::types::{Enforced, InterfaceList, InterfaceView, Nothing};
use super::{Answer, Api, Body};
use crate::model::{Errors, Interface, InterfaceSpec, Model, VpcId};
use axum::extract::{Path, State};

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

impl Named for Interface {
    type View = InterfaceView;
    type List = InterfaceList;
    type Spec = InterfaceSpec;
    const NOUN: &'static str = "interface";

    fn list(m: &Model, vpc: VpcId) -> InterfaceList {
        InterfaceList {
            interfaces: m
                .interfaces()
                .filter(|i| i.vpc == vpc)
                .map(|i| InterfaceView::of(m, i))
                .collect(),
        }
    }

    fn show(m: &Model, vpc: VpcId, name: &str) -> Option<InterfaceView> {
        m.interface_by_name(vpc, name).map(|i| InterfaceView::of(m, i))
    }

    fn create(m: &mut Model, spec: &InterfaceSpec) -> Result<String, Errors> {
        m.create_interface(spec).map(|id| id.to_string())
    }

    fn replace(m: &mut Model, vpc: &str, name: &str, spec: &InterfaceSpec) -> Result<(), Errors> {
        m.update_interface(vpc, name, spec)
    }

    fn delete(m: &mut Model, vpc: &str, name: &str) -> Result<(), Errors> {
        m.delete_interface(vpc, name)
    }
}

pub async fn set_groups(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): Path<(String, String)>,
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
