//! The reference engine: every rule in rank order, first match wins.
//!
//! Deliberately naive, so that it is obviously right: the tests check every other
//! engine against it, and the benchmark prints its speed as the baseline.

use super::{Addr, Classifier, Key, Match, Rule};

/// A linear first-match scan over rules sorted by rank.
#[derive(Debug)]
pub struct Linear<A> {
    rules: Vec<Rule<A>>,
}

impl<A: Addr> Linear<A> {
    pub fn build(rules: &[Rule<A>]) -> Self {
        let mut rules = rules.to_vec();
        rules.sort_by_key(Rule::rank);
        Linear { rules }
    }
}

impl<A: Addr> Classifier<A> for Linear<A> {
    fn lookup(&self, key: &Key<A>) -> Option<Match> {
        self.rules.iter().find(|r| r.matches(key)).map(Match::from)
    }

    fn memory_bytes(&self) -> usize {
        self.rules.capacity() * size_of::<Rule<A>>()
    }
}
