//! The handlers of objects named within a VPC that are listed, shown,
//! created, replaced and deleted alike: interfaces and prefix lists. Each
//! kind says how in its [`Named`] implementation.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::types::{Created, Enforced, Nothing};
use super::{vpc_id, Answer, Api, ApiError, Body};
use crate::model::{Errors, Model, VpcId};

/// A kind of object named within a VPC.
pub trait Named: Send + Sync + 'static {
    /// One object as the API shows it.
    type View: Serialize + Send;
    /// Every object of a VPC as the API lists them.
    type List: Serialize + Send;
    /// What creates or replaces one (its `vpc` may be left out).
    type Spec: DeserializeOwned + Send;
    /// Its name in messages, e.g. `prefix list`.
    const NOUN: &'static str;

    fn list(m: &Model, vpc: VpcId) -> Self::List;
    fn show(m: &Model, vpc: VpcId, name: &str) -> Option<Self::View>;
    /// Creates it; answers its id.
    fn create(m: &mut Model, spec: &Self::Spec) -> Result<String, Errors>;
    fn replace(m: &mut Model, vpc: &str, name: &str, spec: &Self::Spec) -> Result<(), Errors>;
    fn delete(m: &mut Model, vpc: &str, name: &str) -> Result<(), Errors>;
}

type InVpc = Path<(String, String)>;

pub async fn list<N: Named>(State(api): State<Arc<Api>>, Path(vpc): Path<String>) -> Answer<N::List> {
    api.read(|p| {
        let m = &p.model;
        Ok(N::list(m, vpc_id(m, &vpc)?))
    })
    .await
}

pub async fn show<N: Named>(State(api): State<Arc<Api>>, Path((vpc, name)): InVpc) -> Answer<N::View> {
    api.read(|p| {
        let m = &p.model;
        N::show(m, vpc_id(m, &vpc)?, &name)
            .ok_or_else(|| ApiError::not_found(&format!("{} {name:?} in vpc {vpc:?}", N::NOUN)))
    })
    .await
}

pub async fn create<N: Named>(
    State(api): State<Arc<Api>>,
    Path(vpc): Path<String>,
    Body(body): Body<Value>,
) -> Answer<Enforced<Created>> {
    api.create_in(&vpc, body, |m, spec: &N::Spec| N::create(m, spec))
        .await
}

pub async fn replace<N: Named>(
    State(api): State<Arc<Api>>,
    Path((vpc, name)): InVpc,
    Body(body): Body<Value>,
) -> Answer<Enforced> {
    api.update_in(&vpc, &name, body, |m, vpc, name, spec: &N::Spec| {
        N::replace(m, vpc, name, spec)
    })
    .await
}

pub async fn delete<N: Named>(State(api): State<Arc<Api>>, Path((vpc, name)): InVpc) -> Answer<Enforced> {
    api.mutate_in(&vpc, |m, vpc| Ok(N::delete(m, vpc, &name).map(|()| Nothing {})?))
        .await
}
