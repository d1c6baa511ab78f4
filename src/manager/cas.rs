//! Compare-and-set on one record: read it, decide, write it over the version read, and
//! try again (a bounded number of times) when another writer won.
//!
//! Every read-check-write of the manager goes through [`KeyManager::compare_and_set`]:
//! lifecycle changes, rotation, quota changes and refills, and through them leak handling
//! and the operations of a key acting as manager.

use core::future::Future;
use std::sync::Arc;

use super::KeyManager;
use super::authority::Reach;
use crate::key::id::KeyId;
use crate::record::KeyRecord;
use crate::store::{KeyStore, LiveCaps, StoreError};

/// The errors of an operation made by compare-and-set: a store error converts into one,
/// and it can say that the record is missing (or out of reach, which looks the same) and
/// that the record kept changing.
pub(crate) trait CasError: From<StoreError> {
    /// No record with this id, or one outside the actor's reach.
    fn not_found(id: KeyId) -> Self;
    /// Every attempt lost to another writer.
    fn contended(id: KeyId) -> Self;
}

/// A write decided by one attempt, made over the version read.
pub(crate) enum Write {
    /// Replace the record ([`KeyStore::update`]).
    Update(KeyRecord),
    /// Replace the record keeping the caps of live keys of its owner and tenant
    /// ([`KeyStore::update_within`]).
    Capped(KeyRecord, LiveCaps),
    /// Retire the record and insert its successor in one step ([`KeyStore::rotate`]); a
    /// successor id that exists already is retried with the next attempt's.
    /// Boxed, so that the other writes (quota refills on the verification path among
    /// them) do not carry the room for two records.
    Rotate {
        /// The record read, changed.
        retired: Box<KeyRecord>,
        /// Its successor.
        new: Box<KeyRecord>,
    },
}

impl Write {
    /// The record written: the updated one (with its new version once written), or a
    /// rotation's new key.
    pub(crate) fn into_record(self) -> KeyRecord {
        match self {
            Self::Update(record) | Self::Capped(record, _) => record,
            Self::Rotate { new, .. } => *new,
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "made once per attempt and moved, never stored: boxing would only add an allocation"
)]
/// What one attempt decided about the record it read. `K` and `W` travel to the caller
/// (a decision that always writes keeps [`Infallible`](core::convert::Infallible)).
pub(crate) enum Decision<K, W> {
    /// Nothing to write.
    Keep(K),
    /// Make this write.
    Write(Write, W),
}

#[expect(
    clippy::large_enum_variant,
    reason = "made once per call and moved, never stored: boxing would only add an allocation"
)]
/// What [`KeyManager::compare_and_set`] did.
pub(crate) enum Outcome<K, W> {
    /// Nothing was written: the record as read.
    Kept(Arc<KeyRecord>, K),
    /// The write was made.
    Written {
        /// The record as read, before the write.
        before: Arc<KeyRecord>,
        /// The write made (an updated record carries its new version).
        write: Write,
        /// What the deciding attempt returned with it.
        value: W,
    },
}

impl<S: KeyStore> KeyManager<S> {
    /// Reads `id` (the first attempt may start from `seen`, a possibly stale read), checks
    /// it is within `reach` (on every attempt, against the version to be written), lets
    /// `decide` check it and say what to write (or refuse with an error), and writes it over
    /// the version read. A lost compare-and-set reads again and decides again, at most
    /// `attempts` times in all, then fails with [`CasError::contended`]. A missing record,
    /// or one outside reach, is [`CasError::not_found`]; any other store error stops at once.
    pub(crate) async fn compare_and_set<K, W, E, F>(
        &self,
        id: &KeyId,
        reach: Option<&Reach>,
        mut seen: Option<Arc<KeyRecord>>,
        attempts: usize,
        mut decide: impl FnMut(Arc<KeyRecord>) -> F,
    ) -> Result<Outcome<K, W>, E>
    where
        E: CasError,
        F: Future<Output = Result<Decision<K, W>, E>>,
    {
        for _ in 0..attempts {
            let current = match seen.take() {
                // A record the caller read is checked against the reach like a fresh read.
                Some(record) => match reach {
                    Some(reach) if !self.reaches(reach, &record).await? => {
                        return Err(E::not_found(*id));
                    }
                    _ => record,
                },
                None => self.reachable::<E>(id, reach).await?,
            };
            let (mut write, value) = match decide(Arc::clone(&current)).await? {
                Decision::Keep(kept) => return Ok(Outcome::Kept(current, kept)),
                Decision::Write(write, value) => (write, value),
            };
            let version = current.version;
            let written = match &write {
                Write::Update(next) => self.store.update(next.clone(), version).await,
                Write::Capped(next, caps) => {
                    let now = self.clock.now();
                    self.store
                        .update_within(next.clone(), version, *caps, now)
                        .await
                }
                Write::Rotate { retired, new } => {
                    self.store
                        .rotate(KeyRecord::clone(retired), version, KeyRecord::clone(new))
                        .await
                }
            };
            match written {
                Ok(()) => {
                    if let Write::Update(next) | Write::Capped(next, _) = &mut write {
                        next.version = version.saturating_add(1);
                    }
                    return Ok(Outcome::Written {
                        before: current,
                        write,
                        value,
                    });
                }
                Err(StoreError::Conflict(_)) => {}
                Err(StoreError::Duplicate(_)) if matches!(write, Write::Rotate { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(E::contended(*id))
    }

    /// The record of `id`, if it exists and (with `reach`) is within reach; otherwise
    /// [`CasError::not_found`], the same answer for both.
    pub(crate) async fn reachable<E: CasError>(
        &self,
        id: &KeyId,
        reach: Option<&Reach>,
    ) -> Result<Arc<KeyRecord>, E> {
        // From the store of record: a decision to write (or to keep) is never made on a
        // cached copy.
        let record = self
            .store
            .get_fresh(id)
            .await?
            .ok_or_else(|| E::not_found(*id))?;
        match reach {
            Some(reach) if !self.reaches(reach, &record).await? => Err(E::not_found(*id)),
            _ => Ok(record),
        }
    }
}
