//! Delegation lineage: a delegated key's ancestors, read at every verification, and what
//! they leave the key (its bounds).
//!
//! A delegated key's [`parent`](KeyRecord::parent) names the exact key that minted it. The
//! child is bound to that key, not to its successors: rotating or regenerating the parent
//! ends its children with the old key (at the end of the grace period, or at once), so a
//! key rotated because it leaked takes everything minted from it down too. A key in a
//! rotation's grace period is bound to its successor instead (it works only while the new
//! key does).

use std::sync::Arc;

use time::OffsetDateTime;

use super::KeyManager;
use super::verify::VerifyError;
use crate::key::id::KeyId;
use crate::network::Networks;
use crate::record::{KeyRecord, KeyStatus};
use crate::scope::{Restrictions, ScopeSet};
use crate::store::{KeyStore, StoreError};

/// Default deepest delegation: a root key, its child, ... down to four levels below it.
pub const DEFAULT_MAX_DELEGATION_DEPTH: usize = 4;

/// Most successors checked from a key in a rotation's grace period (each must still work);
/// a longer chain of overlapping rotations is refused.
pub(crate) const MAX_SUCCESSORS: usize = 16;

/// Why an ancestor chain could not be read.
pub(crate) enum LineageError {
    /// An ancestor is missing, or the chain is deeper than allowed or loops.
    Broken,
    /// The store failed.
    Store(StoreError),
}

/// What a key may do after its lineage is taken into account.
pub(crate) struct Bounds {
    /// Effective scopes (`None`: the record's own, unchanged).
    pub(crate) scopes: Option<ScopeSet>,
    /// Effective restrictions (`None`: the record's own, unchanged).
    pub(crate) restrictions: Option<Restrictions>,
    /// Effective networks (`None`: the record's own, unchanged).
    pub(crate) networks: Option<Networks>,
    /// The earliest end of the key and its ancestors.
    pub(crate) ends_at: Option<OffsetDateTime>,
}

/// The earlier of two ends (`None`: never).
pub(crate) fn earlier(
    a: Option<OffsetDateTime>,
    b: Option<OffsetDateTime>,
) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl<S: KeyStore> KeyManager<S> {
    /// The record `id`: from the store of record when `fresh` (a management decision),
    /// else as verification reads it (through any cache).
    pub(crate) async fn read(
        &self,
        id: &KeyId,
        fresh: bool,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if fresh {
            self.store.get_fresh(id).await
        } else {
            self.store.get(id).await
        }
    }

    /// The ancestors of `record`, nearest first, read from the store of record
    /// ([`KeyStore::get_fresh`]: the lineage decides management calls). Empty for a root
    /// key.
    pub(crate) async fn ancestors(
        &self,
        record: &KeyRecord,
    ) -> Result<Vec<Arc<KeyRecord>>, LineageError> {
        let mut out: Vec<Arc<KeyRecord>> = Vec::new();
        let mut next = record.parent;
        while let Some(id) = next {
            if out.len() >= self.max_delegation_depth {
                return Err(LineageError::Broken);
            }
            let ancestor = self.read_ancestor(id, true).await?;
            if ancestor.id == record.id || out.iter().any(|a| a.id == ancestor.id) {
                return Err(LineageError::Broken);
            }
            next = ancestor.parent;
            out.push(ancestor);
        }
        Ok(out)
    }

    /// The record `id` of a chain (from the store of record when `fresh`): a missing one
    /// breaks the chain.
    pub(crate) async fn read_ancestor(
        &self,
        id: KeyId,
        fresh: bool,
    ) -> Result<Arc<KeyRecord>, LineageError> {
        match self.read(&id, fresh).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(LineageError::Broken),
            Err(e) => Err(LineageError::Store(e)),
        }
    }

    /// The key's scopes with roles and implications, as the catalog resolves them now.
    pub(crate) fn resolved(&self, record: &KeyRecord) -> Option<ScopeSet> {
        self.catalog
            .as_ref()
            .map(|catalog| catalog.resolve(&record.scopes, &record.roles))
    }

    /// What `record` may do given its ancestors, without the owner bound: its resolved
    /// scopes within each ancestor's, its restrictions within each ancestor's, its end no
    /// later than theirs. Liveness is not checked here.
    pub(crate) fn lineage_bounds(
        &self,
        record: &KeyRecord,
        ancestors: &[Arc<KeyRecord>],
    ) -> Bounds {
        let mut bounds = self.own_bounds(record);
        for ancestor in ancestors {
            self.bound_by(record, &mut bounds, ancestor);
        }
        bounds
    }

    /// A key's bounds before its ancestors are taken into account.
    pub(crate) fn own_bounds(&self, record: &KeyRecord) -> Bounds {
        Bounds {
            scopes: self.resolved(record),
            restrictions: None,
            networks: None,
            ends_at: record.expires_at,
        }
    }

    /// Narrows `bounds` (of `record`) by one ancestor.
    pub(crate) fn bound_by(&self, record: &KeyRecord, bounds: &mut Bounds, ancestor: &KeyRecord) {
        let theirs = self.resolved(ancestor);
        let theirs = theirs.as_ref().unwrap_or(&ancestor.scopes);
        let ours = bounds.scopes.as_ref().unwrap_or(&record.scopes);
        // The usual case costs one subset test: a child minted within its parent.
        if !ours.is_subset(theirs) {
            bounds.scopes = Some(ours.intersection(theirs));
        }
        let ours = bounds.restrictions.as_ref().unwrap_or(&record.restrictions);
        if !ours.is_within(&ancestor.restrictions) {
            bounds.restrictions = Some(ours.intersection(&ancestor.restrictions));
        }
        let ours = bounds.networks.as_ref().unwrap_or(&record.allowed_networks);
        if !ours.is_within(&ancestor.allowed_networks) {
            bounds.networks = Some(ours.intersection(&ancestor.allowed_networks));
        }
        bounds.ends_at = earlier(bounds.ends_at, ancestor.expires_at);
    }

    /// Checks that a key (the one verified, an ancestor or a successor) still works at
    /// `now`; an ancestor's or successor's state is reported as the verified key's own.
    pub(crate) fn check_live(record: &KeyRecord, now: OffsetDateTime) -> Result<(), VerifyError> {
        match record.status {
            KeyStatus::Revoked => Err(VerifyError::Revoked),
            KeyStatus::Disabled => Err(VerifyError::Disabled),
            KeyStatus::Active if record.is_expired(now) => Err(VerifyError::Expired),
            KeyStatus::Active => Ok(()),
        }
    }
}

/// A broken chain (a missing ancestor or successor, one too deep or looping) makes the key
/// revoked; a store failure fails closed.
impl From<LineageError> for VerifyError {
    fn from(e: LineageError) -> Self {
        match e {
            LineageError::Broken => Self::Revoked,
            LineageError::Store(e) => Self::Unavailable(Box::new(e)),
        }
    }
}
