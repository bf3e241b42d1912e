//! Protected interfaces: create, update, delete, and bind or unbind groups. The address
//! and name indexes of the model are kept in step here and nowhere else.

use super::error::Collector;
use super::*;

impl Model {
    /// Resolves the group names or ids of an interface of `vpc`. With no groups
    /// the interface is bound to `default`, except a bare-metal interface given
    /// an explicitly empty list: only that one is left unfiltered, so that
    /// forgetting the key never opens an interface.
    fn resolve_bound_groups(
        &self,
        subject: &str,
        vpc: VpcId,
        names: Option<&[String]>,
        bare_metal: bool,
        errs: &mut Collector,
    ) -> Vec<GroupId> {
        let unfiltered = bare_metal && names.is_some_and(<[String]>::is_empty);
        let names = names.unwrap_or_default();
        let mut ids: Vec<GroupId> = Vec::new();
        for name in names {
            match self.resolve_group(vpc, name) {
                Ok(g) if ids.contains(&g.id) => errs.push(ModelError::field(
                    subject,
                    "groups",
                    format!("group {:?} is listed twice", g.name),
                )),
                Ok(g) => ids.push(g.id),
                Err(e) => {
                    errs.push(ModelError::field(subject, "groups", e.message).with_code(ErrorCode::NotFound))
                }
            }
        }
        if names.len() > self.quotas.groups_per_interface {
            errs.push(
                ModelError::field(
                    subject,
                    "groups",
                    format!(
                        "lists {} groups; the quota is {} groups per interface",
                        names.len(),
                        self.quotas.groups_per_interface
                    ),
                )
                .with_code(ErrorCode::QuotaExceeded),
            );
        }
        if names.is_empty() && !unfiltered {
            if let Some(v) = self.vpcs.get(&vpc) {
                ids.push(v.default_group);
            }
        }
        ids
    }

    /// Checks `spec` as a new interface (`this` is `None`) or as the new state of
    /// interface `this`, and returns the interface it describes.
    fn check_interface(&self, spec: &InterfaceSpec, this: Option<&Interface>) -> Result<Interface, Errors> {
        let subject = interface_subject(&spec.vpc, &spec.name);
        let vpc = self.vpc_field(&subject, &spec.vpc)?.id;
        let this_id = this.map(|i| i.id);
        let mut errs = Collector::default();
        if this.is_some_and(|old| old.vpc != vpc) {
            errs.push(ModelError::field(
                &subject,
                "vpc",
                "an interface cannot move to another vpc; delete it and create it there",
            ));
        }
        errs.take(check_name(
            &subject,
            &spec.name,
            InterfaceId::parse(&spec.name).is_some(),
        ));
        if self
            .interface_by_name(vpc, &spec.name)
            .is_some_and(|i| Some(i.id) != this_id)
        {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "an interface of that name exists",
            ));
        }
        if this.is_none() && self.interfaces.len() >= self.quotas.interfaces {
            errs.push(ModelError::new(
                ErrorCode::QuotaExceeded,
                &subject,
                format!("the quota is {} interfaces in all", self.quotas.interfaces),
            ));
        }
        let addresses = self.check_addresses(&subject, vpc, this_id, &spec.addresses, &mut errs);
        let mac = match &spec.mac {
            None => None,
            Some(m) => errs.take(MacAddr::parse(m).map_err(|msg| ModelError::field(&subject, "mac", msg))),
        };
        let bare_metal = spec.bare_metal.unwrap_or(false);
        let groups = self.resolve_bound_groups(&subject, vpc, spec.groups.as_deref(), bare_metal, &mut errs);
        errs.finish()?;
        Ok(Interface {
            id: this_id.unwrap_or(InterfaceId(self.next.interface + 1)),
            vpc,
            name: spec.name.clone(),
            addresses,
            mac,
            groups,
            bare_metal,
        })
    }

    /// Adds a checked interface and its index entries.
    fn insert_interface(&mut self, iface: Interface) {
        for addr in &iface.addresses {
            self.addresses.insert((iface.vpc, *addr), iface.id);
        }
        self.interface_names
            .insert((iface.vpc, iface.name.clone()), iface.id);
        self.interfaces.insert(&mut self.changes, iface.id, iface);
    }

    /// Removes an interface and its index entries.
    fn remove_interface(&mut self, id: InterfaceId) {
        if let Some(iface) = self.interfaces.remove(&mut self.changes, &id) {
            for addr in &iface.addresses {
                self.addresses.remove(&(iface.vpc, *addr));
            }
            self.interface_names.remove(&(iface.vpc, iface.name));
        }
    }

    /// Creates a protected interface. Without groups it is bound to its VPC's
    /// `default` group, unless it is bare metal, which may stay unfiltered.
    pub fn create_interface(&mut self, spec: &InterfaceSpec) -> Result<InterfaceId, Errors> {
        let iface = self.check_interface(spec, None)?;
        self.next.interface += 1;
        let id = iface.id;
        self.insert_interface(iface);
        Ok(id)
    }

    /// Replaces interface `name` of `vpc` with `spec` (same VPC; it may be
    /// renamed, readdressed and rebound in one change).
    pub fn update_interface(&mut self, vpc: &str, name: &str, spec: &InterfaceSpec) -> Result<(), Errors> {
        let old = self.find_interface(vpc, name)?;
        let new = self.check_interface(spec, Some(old))?;
        self.remove_interface(new.id);
        self.insert_interface(new);
        Ok(())
    }

    /// Parses and checks an interface's addresses: at least one, no repeats, none
    /// owned by another interface of the VPC (`this` may already own them).
    fn check_addresses(
        &self,
        subject: &str,
        vpc: VpcId,
        this: Option<InterfaceId>,
        raw: &[String],
        errs: &mut Collector,
    ) -> Vec<IpAddr> {
        if raw.is_empty() {
            errs.push(ModelError::field(
                subject,
                "addresses",
                "an interface needs at least one address",
            ));
        }
        let mut addresses = Vec::new();
        for a in raw {
            let Some(addr) =
                errs.take(parse_address(a).map_err(|m| ModelError::field(subject, "addresses", m)))
            else {
                continue;
            };
            if addresses.contains(&addr) {
                errs.push(ModelError::field(
                    subject,
                    "addresses",
                    format!("{addr} is listed twice"),
                ));
                continue;
            }
            if let Some(owner) = self
                .interface_by_address(vpc, addr)
                .filter(|i| Some(i.id) != this)
            {
                errs.push(
                    ModelError::field(
                        subject,
                        "addresses",
                        format!("{addr} already belongs to interface {:?}", owner.name),
                    )
                    .with_code(ErrorCode::AlreadyExists),
                );
                continue;
            }
            addresses.push(addr);
        }
        addresses
    }

    pub fn delete_interface(&mut self, vpc: &str, name: &str) -> Result<(), Errors> {
        let id = self.find_interface(vpc, name)?.id;
        self.remove_interface(id);
        Ok(())
    }

    /// Replaces an interface's group list. An empty list binds a non-bare-metal
    /// interface to `default`, as at creation.
    pub fn set_interface_groups(&mut self, vpc: &str, name: &str, groups: &[String]) -> Result<(), Errors> {
        let iface = self.find_interface(vpc, name)?;
        let subject = interface_subject(vpc, name);
        let mut errs = Collector::default();
        let ids = self.resolve_bound_groups(&subject, iface.vpc, Some(groups), iface.bare_metal, &mut errs);
        errs.finish()?;
        let id = iface.id;
        self.interfaces
            .get_mut(&mut self.changes, &id)
            .expect("found above")
            .groups = ids;
        Ok(())
    }

    /// Binds one more group to an interface, after its current ones.
    pub fn bind_group(&mut self, vpc: &str, name: &str, group: &str) -> Result<(), Errors> {
        let iface = self.find_interface(vpc, name)?;
        let g = self.resolve_group(iface.vpc, group)?;
        if iface.groups.contains(&g.id) {
            return Err(ModelError::new(
                ErrorCode::AlreadyExists,
                interface_subject(vpc, name),
                format!("is already bound to group {:?}", g.name),
            )
            .into());
        }
        let mut names: Vec<String> = iface.groups.iter().map(|id| id.to_string()).collect();
        names.push(g.id.to_string());
        self.set_interface_groups(vpc, name, &names)
    }

    /// Unbinds a group from an interface. The last group of a non-bare-metal
    /// interface cannot be unbound: bind another one first.
    pub fn unbind_group(&mut self, vpc: &str, name: &str, group: &str) -> Result<(), Errors> {
        let iface = self.find_interface(vpc, name)?;
        let subject = interface_subject(vpc, name);
        let g = self.resolve_group(iface.vpc, group)?;
        if !iface.groups.contains(&g.id) {
            return Err(ModelError::new(
                ErrorCode::NotFound,
                subject,
                format!("is not bound to group {:?}", g.name),
            )
            .into());
        }
        if iface.groups.len() == 1 && !iface.bare_metal {
            return Err(ModelError::field(
                subject,
                "groups",
                format!(
                    "{:?} is its only group and an interface needs at least one; bind another group first",
                    g.name
                ),
            )
            .into());
        }
        let gid = g.id;
        let id = iface.id;
        self.interfaces
            .get_mut(&mut self.changes, &id)
            .expect("found above")
            .groups
            .retain(|x| *x != gid);
        Ok(())
    }
}
