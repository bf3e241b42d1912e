//! Prefix lists: named CIDR sets used as rule remotes; create, update, delete. A list in use cannot be
//! deleted; changing its CIDRs changes every rule that uses it.

use super::error::Collector;
use super::*;

impl Model {
    fn check_cidrs(subject: &str, raw: &[String], errs: &mut Collector) -> Vec<IpNet> {
        let mut cidrs = Vec::new();
        for c in raw {
            if let Some(net) = errs.take(parse_cidr(c).map_err(|m| ModelError::field(subject, "cidrs", m))) {
                if cidrs.contains(&net) {
                    errs.push(ModelError::field(
                        subject,
                        "cidrs",
                        format!("{net} is listed twice"),
                    ));
                } else {
                    cidrs.push(net);
                }
            }
        }
        cidrs
    }

    /// Checks `spec` as a new prefix list (`this` is `None`) or as the new state
    /// of prefix list `this`, and returns the list it describes.
    fn check_prefix_list(
        &self,
        spec: &PrefixListSpec,
        this: Option<&PrefixList>,
    ) -> Result<PrefixList, Errors> {
        let subject = prefix_list_subject(&spec.vpc, &spec.name);
        let vpc = self.vpc_field(&subject, &spec.vpc)?.id;
        let this_id = this.map(|p| p.id);
        let mut errs = Collector::default();
        if this.is_some_and(|old| old.vpc != vpc) {
            errs.push(ModelError::field(
                &subject,
                "vpc",
                "a prefix list cannot move to another vpc; create it there",
            ));
        }
        errs.take(check_name(
            &subject,
            &spec.name,
            PrefixListId::parse(&spec.name).is_some(),
        ));
        if self
            .prefix_list_by_name(vpc, &spec.name)
            .is_some_and(|other| Some(other.id) != this_id)
        {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a prefix list of that name exists",
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let cidrs = Self::check_cidrs(&subject, &spec.cidrs, &mut errs);
        errs.finish()?;
        Ok(PrefixList {
            id: this_id.unwrap_or(PrefixListId(self.next.prefix_list + 1)),
            vpc,
            name: spec.name.clone(),
            description: description.unwrap_or_default(),
            cidrs,
        })
    }

    pub fn create_prefix_list(&mut self, spec: &PrefixListSpec) -> Result<PrefixListId, Errors> {
        let pl = self.check_prefix_list(spec, None)?;
        self.next.prefix_list += 1;
        let id = pl.id;
        self.prefix_lists.insert(&mut self.changes, id, pl);
        Ok(id)
    }

    /// Replaces a prefix list's name, description and CIDRs with those of
    /// `spec` (same VPC); every rule using it follows.
    pub fn update_prefix_list(&mut self, vpc: &str, name: &str, spec: &PrefixListSpec) -> Result<(), Errors> {
        let old = self.find_prefix_list(vpc, name)?;
        let new = self.check_prefix_list(spec, Some(old))?;
        self.prefix_lists.insert(&mut self.changes, new.id, new);
        Ok(())
    }

    /// Deletes a prefix list that no rule uses.
    pub fn delete_prefix_list(&mut self, vpc: &str, name: &str) -> Result<(), Errors> {
        let pl = self.find_prefix_list(vpc, name)?;
        let id = pl.id;
        let users: Vec<String> = self
            .groups
            .values()
            .flat_map(|g| {
                g.rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.remote == Some(Remote::PrefixList(id)))
                    .map(move |(i, r)| format!("rule {} ({}) of group {:?}", i + 1, r.id, g.name))
            })
            .collect();
        if !users.is_empty() {
            return Err(ModelError::new(
                ErrorCode::InUse,
                prefix_list_subject(vpc, name),
                format!("is still used by {}; remove those rules first", users.join(", ")),
            )
            .into());
        }
        self.prefix_lists.remove(&mut self.changes, &id);
        Ok(())
    }
}
