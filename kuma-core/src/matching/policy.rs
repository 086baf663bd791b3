//! What the matcher needs to know about a policy, and the tie-break rules.

use super::Rank;
use crate::resource::{PolicyTargets, Resource, ResourceType};
use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::Arc;
use time::OffsetDateTime;

/// A policy as seen by the matcher: its type, name, creation time and
/// selectors.
///
/// Implemented for [`Resource`] and, through references and smart pointers,
/// for `&Resource`, `Arc<Resource>`, `Box<Resource>` and `Rc<Resource>`, so
/// a store listing (`Vec<Arc<Resource>>`) can be matched as it is. The
/// matcher returns references into the caller's slice, so matching a
/// `&[Arc<Resource>]` yields `&Arc<Resource>` that can be cloned cheaply.
///
/// Names must be unique per type among the policies matched together (as they
/// are within one mesh); the name is the last tie-break.
pub trait MatchPolicy {
    /// The policy's resource type (decides how it is matched).
    fn policy_type(&self) -> ResourceType;
    /// The policy's name (last tie-break: lexicographically first wins).
    fn policy_name(&self) -> &str;
    /// The policy's creation time (tie-break: newer wins; `None` is older
    /// than any time).
    fn policy_creation_time(&self) -> Option<OffsetDateTime>;
    /// The policy's selectors; `None` if it is not a policy.
    fn policy_targets(&self) -> Option<PolicyTargets<'_>>;
}

impl MatchPolicy for Resource {
    fn policy_type(&self) -> ResourceType {
        self.resource_type()
    }
    fn policy_name(&self) -> &str {
        &self.meta.name
    }
    fn policy_creation_time(&self) -> Option<OffsetDateTime> {
        self.meta.creation_time
    }
    fn policy_targets(&self) -> Option<PolicyTargets<'_>> {
        self.spec.policy_targets()
    }
}

macro_rules! forward_match_policy {
    ($($ptr:ty),*) => {$(
        impl<T: MatchPolicy + ?Sized> MatchPolicy for $ptr {
            fn policy_type(&self) -> ResourceType {
                (**self).policy_type()
            }
            fn policy_name(&self) -> &str {
                (**self).policy_name()
            }
            fn policy_creation_time(&self) -> Option<OffsetDateTime> {
                (**self).policy_creation_time()
            }
            fn policy_targets(&self) -> Option<PolicyTargets<'_>> {
                (**self).policy_targets()
            }
        }
    )*};
}

forward_match_policy!(&T, Box<T>, Arc<T>, Rc<T>);

/// Orders two ranked candidates: higher rank, then newer creation time, then
/// the lexicographically first name. `Greater` means `a` wins.
pub fn compare_candidates<P: MatchPolicy + ?Sized>(
    a_rank: Rank,
    a: &P,
    b_rank: Rank,
    b: &P,
) -> Ordering {
    a_rank
        .cmp(&b_rank)
        .then_with(|| a.policy_creation_time().cmp(&b.policy_creation_time()))
        .then_with(|| b.policy_name().cmp(a.policy_name()))
}

/// Keeps the winning candidate among those offered.
pub(crate) struct Best<'p, P> {
    best: Option<(Rank, &'p P)>,
}

impl<P> Clone for Best<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Best<'_, P> {}

impl<'p, P: MatchPolicy> Best<'p, P> {
    pub(crate) fn new() -> Self {
        Self { best: None }
    }

    pub(crate) fn offer(&mut self, rank: Rank, policy: &'p P) {
        match self.best {
            Some((br, bp)) if compare_candidates(rank, policy, br, bp) != Ordering::Greater => {}
            _ => self.best = Some((rank, policy)),
        }
    }

    pub(crate) fn get(&self) -> Option<&'p P> {
        self.best.map(|(_, p)| p)
    }
}
