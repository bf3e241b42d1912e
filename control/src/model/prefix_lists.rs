//! Prefix lists: named CIDR sets used as rule remotes. A list in use cannot be
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

    pub fn create_prefix_list(&mut self, spec: &PrefixListSpec) -> Result<PrefixListId, Errors> {
        let subject = prefix_list_subject(&spec.vpc, &spec.name);
        let vpc = self.find_vpc(&spec.vpc)?.id;
        let mut errs = Collector::default();
        errs.take(check_name(
            &subject,
            &spec.name,
            PrefixListId::parse(&spec.name).is_some(),
        ));
        if self.prefix_list_by_name(vpc, &spec.name).is_some() {
            errs.push(ModelError::new(
                ErrorCode::AlreadyExists,
                &subject,
                "a prefix list of that name exists",
            ));
        }
        let description = errs.take(check_description(&subject, spec.description.as_deref()));
        let cidrs = Self::check_cidrs(&subject, &spec.cidrs, &mut errs);
        errs.finish()?;
        self.next.prefix_list += 1;
        let id = PrefixListId(self.next.prefix_list);
        self.prefix_lists.insert(
            id,
            PrefixList {
                id,
                vpc,
                name: spec.name.clone(),
                description: description.unwrap_or_default(),
                cidrs,
            },
        );
        Ok(id)
    }

    /// Replaces the CIDRs of a prefix list; every rule using it follows.
    pub fn set_prefix_list_cidrs(&mut self, vpc: &str, name: &str, cidrs: &[String]) -> Result<(), Errors> {
        let pl = self.find_prefix_list(vpc, name)?;
        let mut errs = Collector::default();
        let parsed = Self::check_cidrs(&prefix_list_subject(vpc, &pl.name), cidrs, &mut errs);
        errs.finish()?;
        let id = pl.id;
        self.prefix_lists.get_mut(&id).expect("found above").cidrs = parsed;
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
        self.prefix_lists.remove(&id);
        Ok(())
    }
}
