//! How the memory store keeps a record: a compact form of [`KeyRecord`] for the common shape.
//!
//! A `KeyRecord` is several hundred bytes (BENCHMARKS.md, Memory: "`size_of::<KeyRecord>()`"),
//! most of them for fields a typical key leaves empty (rotation and delegation links, quota,
//! roles, restrictions, metadata) or shares with many other keys (prefix, tenant, pepper id).
//! [`Compact`] keeps the fields every key has inline, shares the (prefix, tenant, pepper id)
//! triple between keys through [`Contexts`], keeps the HMAC digest inline, and moves
//! everything else into an optional boxed [`Rest`]. Expanding gives back a record equal to
//! the one stored, field for field: nothing is rounded or dropped, whatever the shape of the
//! record.
//!
//! What it buys: BENCHMARKS.md, Memory: "peak bytes per key while growing" (target ≤ 320 at
//! 1,000,000 keys; the notes under that table compare it with whole `KeyRecord`s). What it
//! costs: a read must expand the record (a few allocations), which the memory store's hot
//! set of expanded records pays once per hot key instead of once per verification.

use std::sync::Arc;

use hashbrown::HashSet;
use time::OffsetDateTime;

use crate::hash::{HashAlgorithm, PepperId, StoredHash};
use crate::key::id::KeyId;
use crate::key::prefix::Prefix;
use crate::network::Networks;
use crate::record::{KeyRecord, KeyStatus, Metadata, QuotaRefill};
use crate::scope::{Restrictions, ScopeSet};

/// Length of an inline digest: HMAC-SHA256's.
const DIGEST_LEN: usize = 32;

/// One record as the memory store holds it.
pub(super) struct Compact {
    id: KeyId,
    status: KeyStatus,
    version: u64,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    last_used_at: Option<OffsetDateTime>,
    name: Box<str>,
    owner: Box<str>,
    scopes: ScopeSet,
    context: Arc<Context>,
    /// The HMAC digest when [`Context::pepper`] is set; zeros otherwise.
    digest: [u8; DIGEST_LEN],
    rest: Option<Box<Rest>>,
}

/// What many keys share: the prefix, the tenant and, for HMAC hashes, the pepper id.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct Context {
    prefix: Prefix,
    tenant: Option<Box<str>>,
    /// `Some` when the hash is HMAC-SHA256 with an inline digest; `None` when the whole hash
    /// is in [`Rest::hash`].
    pepper: Option<PepperId>,
}

/// The fields most keys leave empty, and hashes other than HMAC-SHA256.
#[derive(Default, PartialEq)]
struct Rest {
    roles: Vec<String>,
    restrictions: Restrictions,
    allowed_networks: Networks,
    metadata: Metadata,
    rotated_from: Option<KeyId>,
    rotated_to: Option<KeyId>,
    issued_by: Option<KeyId>,
    parent: Option<KeyId>,
    remaining_uses: Option<u64>,
    refill: Option<QuotaRefill>,
    refilled_at: Option<OffsetDateTime>,
    hash: Option<StoredHash>,
}

impl Compact {
    /// The compact form of `record`, sharing its context through `contexts`.
    pub(super) fn new(record: KeyRecord, contexts: &mut Contexts) -> Self {
        // Destructured in full, so a new field of `KeyRecord` cannot be forgotten here.
        let KeyRecord {
            id,
            prefix,
            tenant,
            name,
            owner,
            scopes,
            roles,
            restrictions,
            allowed_networks,
            metadata,
            created_at,
            expires_at,
            last_used_at,
            status,
            hash,
            version,
            rotated_from,
            rotated_to,
            issued_by,
            parent,
            remaining_uses,
            refill,
            refilled_at,
        } = record;
        let inline = match (hash.algorithm(), hash.pepper_id()) {
            (HashAlgorithm::HmacSha256, Some(pepper)) => {
                <[u8; DIGEST_LEN]>::try_from(hash.digest())
                    .ok()
                    .map(|digest| (pepper.clone(), digest))
            }
            _ => None,
        };
        let (pepper, digest, hash) = match inline {
            Some((pepper, digest)) => (Some(pepper), digest, None),
            None => (None, [0; DIGEST_LEN], Some(hash)),
        };
        let rest = Rest {
            roles,
            restrictions,
            allowed_networks,
            metadata,
            rotated_from,
            rotated_to,
            issued_by,
            parent,
            remaining_uses,
            refill,
            refilled_at,
            hash,
        };
        let context = contexts.intern(Context {
            prefix,
            tenant: tenant.map(String::into_boxed_str),
            pepper,
        });
        Self {
            id,
            status,
            version,
            created_at,
            expires_at,
            last_used_at,
            name: name.into_boxed_str(),
            owner: owner.into_boxed_str(),
            scopes,
            context,
            digest,
            rest: (rest != Rest::default()).then(|| Box::new(rest)),
        }
    }

    /// The record, equal to the one this was made from (with the changes made since).
    ///
    /// `None` only if the compact form lost its hash, which [`Compact::new`] never lets
    /// happen (the hash is either inline with its pepper id or whole in the rest); the store
    /// reports that as corruption rather than panicking.
    pub(super) fn expand(&self) -> Option<KeyRecord> {
        let context = &*self.context;
        let rest = self.rest.as_deref();
        let hash = match (rest.and_then(|r| r.hash.as_ref()), &context.pepper) {
            (Some(hash), _) => hash.clone(),
            (None, Some(pepper)) => StoredHash::hmac(pepper.clone(), self.digest),
            (None, None) => return None,
        };
        Some(KeyRecord {
            id: self.id,
            prefix: context.prefix.clone(),
            tenant: context.tenant.as_deref().map(str::to_owned),
            name: self.name.to_string(),
            owner: self.owner.to_string(),
            scopes: self.scopes.clone(),
            roles: rest.map(|r| r.roles.clone()).unwrap_or_default(),
            restrictions: rest.map(|r| r.restrictions.clone()).unwrap_or_default(),
            allowed_networks: rest.map(|r| r.allowed_networks.clone()).unwrap_or_default(),
            metadata: rest.map(|r| r.metadata.clone()).unwrap_or_default(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            status: self.status,
            hash,
            version: self.version,
            rotated_from: rest.and_then(|r| r.rotated_from),
            rotated_to: rest.and_then(|r| r.rotated_to),
            issued_by: rest.and_then(|r| r.issued_by),
            parent: rest.and_then(|r| r.parent),
            remaining_uses: rest.and_then(|r| r.remaining_uses),
            refill: rest.and_then(|r| r.refill),
            refilled_at: rest.and_then(|r| r.refilled_at),
        })
    }

    pub(super) fn id(&self) -> KeyId {
        self.id
    }

    pub(super) fn version(&self) -> u64 {
        self.version
    }

    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    pub(super) fn tenant(&self) -> Option<&str> {
        self.context.tenant.as_deref()
    }

    pub(super) fn remaining_uses(&self) -> Option<u64> {
        self.rest.as_ref().and_then(|r| r.remaining_uses)
    }

    /// Sets the uses left of a key that has a quota (a key without one is left unchanged).
    pub(super) fn set_remaining_uses(&mut self, uses: u64) {
        if let Some(rest) = &mut self.rest
            && rest.remaining_uses.is_some()
        {
            rest.remaining_uses = Some(uses);
        }
    }

    pub(super) fn status(&self) -> KeyStatus {
        self.status
    }

    pub(super) fn set_status(&mut self, status: KeyStatus) {
        self.status = status;
    }

    /// One more write of the record (see [`KeyStore::update`](crate::KeyStore::update)).
    pub(super) fn bump_version(&mut self) {
        self.version = self.version.saturating_add(1);
    }

    pub(super) fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.last_used_at
    }

    pub(super) fn set_last_used_at(&mut self, at: OffsetDateTime) {
        self.last_used_at = Some(at);
    }
}

/// One shared copy of each distinct [`Context`]. Contexts no record holds any more are
/// dropped when the set has doubled since the last sweep, so it stays within twice the
/// number in use.
#[derive(Default)]
pub(super) struct Contexts {
    set: HashSet<Arc<Context>>,
    swept_at: usize,
}

impl Contexts {
    fn intern(&mut self, context: Context) -> Arc<Context> {
        if let Some(shared) = self.set.get(&context) {
            return Arc::clone(shared);
        }
        if self.set.len() >= 2 * self.swept_at.max(32) {
            self.set.retain(|c| Arc::strong_count(c) > 1);
            self.swept_at = self.set.len();
        }
        let shared = Arc::new(context);
        self.set.insert(Arc::clone(&shared));
        shared
    }

    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}
