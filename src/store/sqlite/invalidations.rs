//! [`SqliteInvalidations`]: the invalidation stream of a
//! [`CachedStore`](crate::store::CachedStore) over a SQLite file shared by several processes,
//! by polling `PRAGMA data_version`.

use core::fmt;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::time::timeout;

use super::SqliteStore;
use crate::store::{CacheFeed, InvalidationStream};

/// The bounds of the default polling period (a quarter of the staleness bound).
const MIN_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_secs(1);
/// How long one poll (or opening the connection) may take before the connection is
/// dropped and opened again.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait before opening the connection again after a failure.
const RETRY: Duration = Duration::from_millis(100);

/// The invalidation stream of a [`CachedStore`](crate::store::CachedStore) over a
/// [`SqliteStore`] whose file other processes write too (several workers of one service
/// on one machine): on a connection of its own, it reads `PRAGMA data_version`, which
/// changes whenever another connection (of any process) committed to the file, and empties
/// the cache ([`CacheFeed::invalidate_all`]) when it changed. Each poll that answered proves
/// the stream live as of when it started ([`CacheFeed::alive_since`]): every commit before
/// it is visible to it.
///
/// SQLite says *that* the file changed, not which keys: every commit, the last-use writes
/// of any process included, empties the cache, so it pays when writes are rare beside
/// verifications (with [`CachedStoreBuilder::write_behind`](crate::store::CachedStoreBuilder::write_behind),
/// last uses are one commit per flush). A single process writing through its own cache
/// needs no stream to see its writes, but the cache still needs this one's proofs to
/// serve from memory.
///
/// It polls every quarter of the cache's staleness bound (between 5 ms and 1 s) unless
/// [`SqliteInvalidations::poll_every`] says otherwise; a poll that fails or takes more
/// than 2 s drops the connection, and the stream opens it again 100 ms later (starting
/// over with [`CacheFeed::invalidate_all`]).
///
/// ```no_run
/// use core::time::Duration;
/// use keyward::store::{CachedStore, InvalidationStream, SqliteInvalidations, SqliteStore};
/// # async fn demo() -> Result<(), keyward::store::StoreError> {
/// let store = SqliteStore::open("keys.db").await?;
/// store.migrate().await?;
/// let (cache, feed) = CachedStore::new(store.clone(), Duration::from_secs(1));
/// tokio::spawn(SqliteInvalidations::new(&store).run(feed));
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteInvalidations {
    options: SqliteConnectOptions,
    poll: Option<Duration>,
}

impl SqliteInvalidations {
    /// A stream over the file of `store`, opened as its pool opens it.
    #[must_use]
    pub fn new(store: &SqliteStore) -> Self {
        Self {
            options: SqliteConnectOptions::clone(&store.pool().connect_options()),
            poll: None,
        }
    }

    /// Polls every `period` instead of every quarter of the cache's staleness bound. Keep
    /// it well within the bound. Zero counts as 1 ms.
    #[must_use]
    pub fn poll_every(mut self, period: Duration) -> Self {
        self.poll = Some(period.max(Duration::from_millis(1)));
        self
    }

    /// One connection's life: open, start over, then poll until a poll fails.
    async fn session(&self, feed: &CacheFeed, period: Duration) {
        let mut conn = match timeout(POLL_TIMEOUT, SqliteConnection::connect_with(&self.options))
            .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::warn!(target: "keyward", error = %e, "cache invalidation stream cannot open the database");
                return;
            }
            Err(_) => {
                tracing::warn!(target: "keyward", "cache invalidation stream: opening the database timed out");
                return;
            }
        };
        let mut seen = None;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = feed.now();
            let version = match timeout(POLL_TIMEOUT, data_version(&mut conn)).await {
                Ok(Ok(version)) => version,
                Ok(Err(e)) => {
                    tracing::warn!(target: "keyward", error = %e, "cache invalidation stream: poll failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(target: "keyward", "cache invalidation stream: poll timed out");
                    return;
                }
            };
            // The first poll of a connection starts over: changes before it are unknown.
            if seen != Some(version) {
                feed.invalidate_all();
                seen = Some(version);
            }
            feed.alive_since(started);
        }
    }
}

/// The connection's `PRAGMA data_version`.
async fn data_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    let row: (i64,) = sqlx::query_as("PRAGMA data_version")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.0)
}

impl InvalidationStream for SqliteInvalidations {
    /// Polls and reopens until the future is dropped (it never returns).
    async fn run(self, feed: CacheFeed) {
        let period = self
            .poll
            .unwrap_or_else(|| (feed.staleness() / 4).clamp(MIN_POLL, MAX_POLL));
        loop {
            self.session(&feed, period).await;
            tokio::time::sleep(RETRY).await;
        }
    }
}

impl fmt::Debug for SqliteInvalidations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteInvalidations")
            .field("file", &self.options.get_filename())
            .field("poll", &self.poll)
            .finish()
    }
}
