//! Mutation test of the KeyStore conformance suite: a wrapper around `MemoryStore` with one
//! switchable bug at a time (each a plausible mistake of a store written for another
//! database), and a test per bug that runs every rule of the suite against it and asserts
//! the suite fails, naming the checks that caught it. Without a bug the suite passes.
//!
//! Run with `--nocapture` to see which checks caught each bug.

#![cfg(feature = "testing")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::testing::{self, Rule};
use keyward::{
    KeyId, KeyRecord, KeyStore, MemoryStore,
    store::{BulkRevocation, Consumed, ListFilter, LiveCaps, Page, StoreError},
};
use time::OffsetDateTime;

/// The bugs the wrapper can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// `insert_capped` counts the owner's live keys, awaits, then writes.
    CapAwaitsBetweenCountAndWrite,
    /// `insert_capped` counts under one lock and writes under another, with no `.await`
    /// between (a little work in between, as a driver would do).
    CapCountsAndWritesUnderTwoLocks,
    /// `update` writes whatever the stored version (compare-and-set ignoring the version).
    UpdateIgnoresVersion,
    /// `update` compares the version, awaits, then writes (compare and set not atomic).
    UpdateComparesThenWrites,
    /// `list` under `ListFilter::Tenant` returns every tenant's records.
    ListIgnoresTenant,
    /// `list` under `ListFilter::Owner` and `ListFilter::Tenant` starts from the first
    /// record whatever `page.after` (an index scan that forgets the cursor).
    IndexListingIgnoresAfter,
    /// `list` orders ids by length first, then bytes (`KeyId`'s old `Ord`).
    ListsShorterIdsFirst,
    /// `insert_capped` replaces a record with the same id when the cap allows the insert.
    CappedInsertOverwrites,
    /// `insert_capped` counts the cap before looking for the id (`LimitReached` before
    /// `Duplicate`).
    CapBeforeDuplicate,
    /// `consume` reads the remaining uses, awaits, then writes the count it computed.
    ConsumeReadsThenWrites,
    /// `consume` takes uses without incrementing the version.
    ConsumeKeepsVersion,
    /// `rotate` updates the old record, then inserts the new one, as two steps.
    RotateInTwoSteps,
    /// `rotate` looks for the new id before checking the old record's version.
    RotateDuplicateBeforeConflict,
    /// `touch` writes through compare-and-set, incrementing the version.
    TouchBumpsVersion,
    /// `touch` of an unknown id fails with `NotFound`.
    TouchUnknownIsNotFound,
    /// `update` keeps the stored `last_used_at` when it is later than the record's.
    UpdateKeepsLaterLastUsed,
    /// `update_capped` checks and counts, awaits, then writes.
    CappedUpdateAwaitsBetweenCountAndWrite,
    /// `insert_within` counts the tenant's live keys among the owner's only (an index on
    /// owner reused for the tenant).
    TenantCapCountsOnlyTheOwner,
    /// `insert_within` counts the tenant's live keys, awaits, then writes.
    TenantCapAwaitsBetweenCountAndWrite,
    /// `update_within` checks the version and counts the tenant's other live keys, awaits,
    /// then writes (a store that locks only the owner on updates).
    TenantCappedUpdateAwaitsBetweenCountAndWrite,
}

/// `MemoryStore`, with at most one bug.
#[derive(Debug, Clone)]
struct Mutant {
    inner: MemoryStore,
    bug: Option<Bug>,
    /// Serialises [`Bug::ConsumeKeepsVersion`]'s read-delete-insert among consumes.
    consume_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Mutant {
    fn new(bug: Option<Bug>) -> Self {
        Self {
            inner: MemoryStore::new(),
            bug,
            consume_lock: Arc::default(),
        }
    }

    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// The owner's records that count against the cap at `now`, but `except`.
    async fn live(
        &self,
        owner: &str,
        now: OffsetDateTime,
        except: Option<KeyId>,
    ) -> Result<usize, StoreError> {
        let filter = ListFilter::Owner(owner.to_owned());
        self.count_live(&filter, now, |r| Some(r.id) != except)
            .await
    }

    /// The tenant's records that count against the cap at `now` (of `only_owner`, when
    /// given).
    async fn tenant_live(
        &self,
        tenant: &str,
        only_owner: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let filter = ListFilter::Tenant(tenant.to_owned());
        self.count_live(&filter, now, |r| only_owner.is_none_or(|o| r.owner == o))
            .await
    }

    /// The records under `filter` that count against the cap at `now` and that `keep`
    /// selects, read page by page.
    async fn count_live(
        &self,
        filter: &ListFilter,
        now: OffsetDateTime,
        keep: impl Fn(&KeyRecord) -> bool,
    ) -> Result<usize, StoreError> {
        let mut live = 0;
        let mut page = Some(Page::first(Page::MAX_LIMIT));
        while let Some(p) = page {
            let records = self.inner.list(filter, p).await?;
            live += records
                .iter()
                .filter(|r| keep(r) && r.counts_against_cap(now))
                .count();
            page = p.next(&records);
        }
        Ok(live)
    }

    /// The stored record if it has `expected` as its version: `NotFound`, then `Conflict`.
    async fn at_version(&self, id: &KeyId, expected: u64) -> Result<Arc<KeyRecord>, StoreError> {
        let current = self.inner.get(id).await?.ok_or(StoreError::NotFound(*id))?;
        if current.version != expected {
            return Err(StoreError::Conflict(*id));
        }
        Ok(current)
    }

    async fn exists(&self, id: &KeyId) -> Result<bool, StoreError> {
        Ok(self.inner.get(id).await?.is_some())
    }
}

/// A little work between two steps, without an `.await`: the thread keeps its task.
fn work_between_steps() {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(200) {
        std::thread::yield_now();
    }
}

/// Compares ids by length, then bytes.
fn length_first(a: &KeyId, b: &KeyId) -> core::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_str().cmp(b.as_str()))
}

impl KeyStore for Mutant {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match self.bug {
            Some(
                bug @ (Bug::CapAwaitsBetweenCountAndWrite | Bug::CapCountsAndWritesUnderTwoLocks),
            ) => {
                if self.exists(&record.id).await? {
                    return Err(StoreError::Duplicate(record.id));
                }
                if self.live(&record.owner, now, None).await? >= max_live {
                    return Err(StoreError::LimitReached { limit: max_live });
                }
                if bug == Bug::CapAwaitsBetweenCountAndWrite {
                    tokio::task::yield_now().await;
                } else {
                    work_between_steps();
                }
                self.inner.insert(record).await
            }
            Some(Bug::CappedInsertOverwrites) => {
                if self.live(&record.owner, now, None).await? >= max_live {
                    return Err(StoreError::LimitReached { limit: max_live });
                }
                self.inner.delete(&record.id).await?;
                self.inner.insert(record).await
            }
            Some(Bug::CapBeforeDuplicate) => {
                if self.live(&record.owner, now, None).await? >= max_live {
                    return Err(StoreError::LimitReached { limit: max_live });
                }
                self.inner.insert_capped(record, max_live, now).await
            }
            _ => self.inner.insert_capped(record, max_live, now).await,
        }
    }

    async fn insert_within(
        &self,
        record: KeyRecord,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let bug = match self.bug {
            Some(
                bug @ (Bug::TenantCapCountsOnlyTheOwner | Bug::TenantCapAwaitsBetweenCountAndWrite),
            ) => bug,
            _ => return self.inner.insert_within(record, caps, now).await,
        };
        if self.exists(&record.id).await? {
            return Err(StoreError::Duplicate(record.id));
        }
        if let Some(cap) = caps.owner_cap()
            && self.live(&record.owner, now, None).await? >= cap
        {
            return Err(StoreError::LimitReached { limit: cap });
        }
        if let (Some(cap), Some(tenant)) = (caps.tenant_cap(), &record.tenant) {
            let only = (bug == Bug::TenantCapCountsOnlyTheOwner).then_some(record.owner.as_str());
            if self.tenant_live(tenant, only, now).await? >= cap {
                return Err(StoreError::TenantLimitReached { limit: cap });
            }
        }
        if bug == Bug::TenantCapAwaitsBetweenCountAndWrite {
            tokio::task::yield_now().await;
        }
        self.inner.insert(record).await
    }

    async fn update_within(
        &self,
        record: KeyRecord,
        expected_version: u64,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if !self.has(Bug::TenantCappedUpdateAwaitsBetweenCountAndWrite) {
            return self
                .inner
                .update_within(record, expected_version, caps, now)
                .await;
        }
        let current = self.at_version(&record.id, expected_version).await?;
        if let (Some(cap), Some(tenant), true) = (
            caps.tenant_cap(),
            &record.tenant,
            record.counts_against_cap(now),
        ) {
            // The record being replaced does not count against itself.
            let itself = usize::from(
                current.counts_against_cap(now) && current.tenant.as_ref() == Some(tenant),
            );
            if self.tenant_live(tenant, None, now).await? - itself >= cap {
                return Err(StoreError::TenantLimitReached { limit: cap });
            }
        }
        tokio::task::yield_now().await;
        self.inner.update(record, expected_version).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.inner.get(id).await
    }

    async fn update(&self, mut record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        let current = self.inner.get(&record.id).await?;
        match self.bug {
            Some(Bug::UpdateIgnoresVersion) => {
                let current = current.ok_or(StoreError::NotFound(record.id))?;
                self.inner.update(record, current.version).await
            }
            Some(Bug::UpdateComparesThenWrites) => {
                let current = current.ok_or(StoreError::NotFound(record.id))?;
                if current.version != expected_version {
                    return Err(StoreError::Conflict(record.id));
                }
                tokio::task::yield_now().await;
                let now = self
                    .inner
                    .get(&record.id)
                    .await?
                    .ok_or(StoreError::NotFound(record.id))?;
                self.inner.update(record, now.version).await
            }
            Some(Bug::UpdateKeepsLaterLastUsed) => {
                if let Some(current) = current
                    && current.last_used_at > record.last_used_at
                {
                    record.last_used_at = current.last_used_at;
                }
                self.inner.update(record, expected_version).await
            }
            _ => self.inner.update(record, expected_version).await,
        }
    }

    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if !self.has(Bug::CappedUpdateAwaitsBetweenCountAndWrite) {
            return self
                .inner
                .update_capped(record, expected_version, max_live, now)
                .await;
        }
        self.at_version(&record.id, expected_version).await?;
        if record.counts_against_cap(now)
            && self.live(&record.owner, now, Some(record.id)).await? >= max_live
        {
            return Err(StoreError::LimitReached { limit: max_live });
        }
        tokio::task::yield_now().await;
        self.inner.update(record, expected_version).await
    }

    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        self.inner.revoke_matching(filter).await
    }

    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        match self.bug {
            Some(Bug::RotateInTwoSteps) => {
                self.inner.update(old, expected_version).await?;
                self.inner.insert(new).await
            }
            Some(Bug::RotateDuplicateBeforeConflict) => {
                if self.exists(&new.id).await? {
                    return Err(StoreError::Duplicate(new.id));
                }
                self.inner.rotate(old, expected_version, new).await
            }
            _ => self.inner.rotate(old, expected_version, new).await,
        }
    }

    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        match (self.bug, filter) {
            (Some(Bug::ListIgnoresTenant), ListFilter::Tenant(_)) => {
                self.inner.list(&ListFilter::All, page).await
            }
            (Some(Bug::IndexListingIgnoresAfter), ListFilter::Owner(_) | ListFilter::Tenant(_)) => {
                let from_start = Page {
                    after: None,
                    ..page
                };
                self.inner.list(filter, from_start).await
            }
            (Some(Bug::ListsShorterIdsFirst), _) => {
                let mut all = Vec::new();
                let mut next = Some(Page::first(Page::MAX_LIMIT));
                while let Some(p) = next {
                    let records = self.inner.list(filter, p).await?;
                    next = p.next(&records);
                    all.extend(records);
                }
                all.sort_by(|a, b| length_first(&a.id, &b.id));
                Ok(all
                    .into_iter()
                    .filter(|r| {
                        page.after
                            .is_none_or(|after| length_first(&r.id, &after).is_gt())
                    })
                    .take(page.limit)
                    .collect())
            }
            _ => self.inner.list(filter, page).await,
        }
    }

    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        let bug = match self.bug {
            Some(bug @ (Bug::ConsumeReadsThenWrites | Bug::ConsumeKeepsVersion)) => bug,
            _ => return self.inner.consume(id, cost).await,
        };
        let _serial = if bug == Bug::ConsumeKeepsVersion {
            Some(self.consume_lock.lock().await)
        } else {
            None
        };
        let Some(record) = self.inner.get(id).await? else {
            return Ok(Consumed::NotFound);
        };
        let left = match record.remaining_uses {
            None => return Ok(Consumed::Unlimited),
            Some(left) if left < cost => return Ok(Consumed::Exhausted),
            Some(left) => left - cost,
        };
        if bug == Bug::ConsumeKeepsVersion {
            let mut taken = KeyRecord::clone(&record);
            taken.remaining_uses = Some(left);
            self.inner.delete(id).await?;
            self.inner.insert(taken).await?;
            return Ok(Consumed::Remaining(left));
        }
        tokio::task::yield_now().await;
        let current = self.inner.get(id).await?.ok_or(StoreError::NotFound(*id))?;
        let mut taken = KeyRecord::clone(&current);
        taken.remaining_uses = Some(left);
        match self.inner.update(taken, current.version).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(Consumed::Remaining(left)),
            Err(e) => Err(e),
        }
    }

    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        match self.bug {
            Some(Bug::TouchBumpsVersion) => {
                self.inner.touch(id, at).await?;
                if let Some(current) = self.inner.get(id).await? {
                    let version = current.version;
                    self.inner
                        .update(KeyRecord::clone(&current), version)
                        .await?;
                }
                Ok(())
            }
            Some(Bug::TouchUnknownIsNotFound) if !self.exists(id).await? => {
                Err(StoreError::NotFound(*id))
            }
            _ => self.inner.touch(id, at).await,
        }
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
}

/// The text of a panic's payload.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Runs every rule of the suite against a fresh store with `bug` (each rule as its
/// generated test would: its own runtime, a fresh store) and returns the rules that failed,
/// with their messages.
fn failing_rules(bug: Option<Bug>) -> Vec<(Rule, String)> {
    let mut failed = Vec::new();
    for &rule in Rule::ALL {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            testing::run_rule(
                rule,
                || async move { Mutant::new(bug) },
                testing::no_teardown,
            );
        }));
        if let Err(payload) = outcome {
            failed.push((rule, message(&*payload)));
        }
    }
    failed
}

/// Asserts that the suite fails against a store with `bug`, and that every rule of
/// `expected` is among the checks that caught it; prints them all.
fn suite_catches(bug: Bug, expected: &[Rule]) {
    let failed = failing_rules(Some(bug));
    let caught: Vec<Rule> = failed.iter().map(|(rule, _)| *rule).collect();
    println!(
        "{bug:?} caught by: {}",
        caught
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (rule, message) in &failed {
        println!("  {rule}: {message}");
    }
    assert!(!failed.is_empty(), "the suite missed {bug:?}");
    for rule in expected {
        assert!(
            caught.contains(rule),
            "{rule} did not catch {bug:?} (caught by {caught:?})"
        );
    }
}

#[test]
fn the_suite_passes_without_a_bug() {
    let failed = failing_rules(None);
    assert!(
        failed.is_empty(),
        "the suite fails on a correct store: {failed:#?}"
    );
}

#[test]
fn catches_a_cap_that_awaits_between_count_and_write() {
    suite_catches(Bug::CapAwaitsBetweenCountAndWrite, &[Rule::CapRace]);
}

#[test]
fn catches_a_cap_counted_and_written_under_two_locks() {
    suite_catches(Bug::CapCountsAndWritesUnderTwoLocks, &[Rule::CapRace]);
}

#[test]
fn catches_compare_and_set_ignoring_the_version() {
    suite_catches(
        Bug::UpdateIgnoresVersion,
        &[Rule::CompareAndSet, Rule::LostCompareAndSet],
    );
}

#[test]
fn catches_compare_and_set_that_is_not_atomic() {
    suite_catches(Bug::UpdateComparesThenWrites, &[Rule::LostCompareAndSet]);
}

#[test]
fn catches_a_listing_ignoring_the_tenant() {
    suite_catches(
        Bug::ListIgnoresTenant,
        &[Rule::PagingAndFilters, Rule::PagingUnderEveryFilter],
    );
}

#[test]
fn catches_index_paging_ignoring_after() {
    suite_catches(
        Bug::IndexListingIgnoresAfter,
        &[Rule::PagingUnderEveryFilter],
    );
}

#[test]
fn catches_listing_shorter_ids_first() {
    suite_catches(Bug::ListsShorterIdsFirst, &[Rule::OrderingAcrossIdLengths]);
}

#[test]
fn catches_a_capped_insert_overwriting_an_existing_id() {
    suite_catches(Bug::CappedInsertOverwrites, &[Rule::CappedInsertDuplicates]);
}

#[test]
fn catches_the_cap_counted_before_duplicates() {
    suite_catches(Bug::CapBeforeDuplicate, &[Rule::CappedInsertDuplicates]);
}

#[test]
fn catches_a_consume_that_is_not_atomic() {
    suite_catches(Bug::ConsumeReadsThenWrites, &[Rule::QuotaUnderConcurrency]);
}

#[test]
fn catches_a_consume_keeping_the_version() {
    suite_catches(Bug::ConsumeKeepsVersion, &[Rule::ConsumeIsAWrite]);
}

#[test]
fn catches_a_rotation_in_two_steps() {
    suite_catches(
        Bug::RotateInTwoSteps,
        &[Rule::AtomicRotation, Rule::RotationErrorOrder],
    );
}

#[test]
fn catches_a_rotation_answering_duplicate_before_conflict() {
    suite_catches(
        Bug::RotateDuplicateBeforeConflict,
        &[Rule::RotationErrorOrder],
    );
}

#[test]
fn catches_a_touch_that_bumps_the_version() {
    suite_catches(Bug::TouchBumpsVersion, &[Rule::TouchLastUsed]);
}

#[test]
fn catches_a_touch_of_an_unknown_id_failing() {
    suite_catches(Bug::TouchUnknownIsNotFound, &[Rule::TouchLastUsed]);
}

#[test]
fn catches_an_update_keeping_a_later_last_used_at() {
    suite_catches(Bug::UpdateKeepsLaterLastUsed, &[Rule::UpdateStoresAsGiven]);
}

#[test]
fn catches_a_capped_update_that_is_not_atomic() {
    suite_catches(
        Bug::CappedUpdateAwaitsBetweenCountAndWrite,
        &[Rule::CappedUpdate],
    );
}

#[test]
fn catches_a_tenant_cap_that_counts_only_the_owner() {
    suite_catches(
        Bug::TenantCapCountsOnlyTheOwner,
        &[Rule::TenantCaps, Rule::TenantCapRace],
    );
}

#[test]
fn catches_a_tenant_cap_that_awaits_between_count_and_write() {
    suite_catches(
        Bug::TenantCapAwaitsBetweenCountAndWrite,
        &[Rule::TenantCapRace],
    );
}

#[test]
fn catches_a_tenant_capped_update_that_is_not_atomic() {
    suite_catches(
        Bug::TenantCappedUpdateAwaitsBetweenCountAndWrite,
        &[Rule::TenantCapRace],
    );
}
