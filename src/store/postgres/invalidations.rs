//! [`PgInvalidations`]: the invalidation stream of a [`CachedStore`](crate::store::CachedStore)
//! over PostgreSQL, on `LISTEN/NOTIFY`.

use core::fmt;
use std::collections::VecDeque;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use time::OffsetDateTime;
use tokio::time::{Instant, MissedTickBehavior, timeout};

use super::PostgresStore;
use crate::key::id::KeyId;
use crate::store::{CacheFeed, InvalidationStream};

/// The channel the schema's triggers notify (schema version 5) and the stream listens on.
const CHANNEL: &str = "keyward_keys";

/// The payload the triggers send for a truncated keys table: everything changed.
const EVERYTHING: &str = "*";

/// Starts a heartbeat's payload; a key id (alphanumeric) never does.
const HEARTBEAT: &str = "heartbeat ";

/// The first wait before reconnecting; doubled after each failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Default for [`PgInvalidations::max_backoff`].
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Default for [`PgInvalidations::connect_timeout`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The bounds of the default heartbeat period (a quarter of the staleness bound).
const MIN_HEARTBEAT: Duration = Duration::from_millis(5);
const MAX_HEARTBEAT: Duration = Duration::from_secs(5);

/// The invalidation stream of a [`CachedStore`](crate::store::CachedStore) over a
/// [`PostgresStore`]: `LISTEN keyward_keys` on a connection of its own, fed by the triggers
/// that [`PostgresStore::migrate`] installs (schema version 5), so that every committed
/// insert, change and deletion of a key, by any instance or tool, reaches every cache.
///
/// It keeps the obligations of [`InvalidationStream`]:
/// - each notification names one key (its id; `*` for a truncated table), sent by
///   PostgreSQL at commit and delivered in commit order;
/// - on every (re)connect, once `LISTEN` is in place, it calls
///   [`CacheFeed::invalidate_all`];
/// - its heartbeat is a `NOTIFY` on the same channel, sent on the listening connection and
///   dated by the cache's clock when sent: it comes back after every notification committed
///   before it, and only then does it call [`CacheFeed::alive_since`] with the time it was
///   sent. An open but stalled connection returns no heartbeat, so the cache stops serving
///   from memory once the staleness bound has passed since the last one that came back.
///
/// A heartbeat is sent every quarter of the cache's staleness bound (between 5 ms and 5
/// s) unless [`PgInvalidations::heartbeat_every`] says otherwise. A heartbeat unanswered
/// for four periods (noticed at the next period's tick), a failed send, or a lost
/// connection ends the connection; the stream
/// reconnects after a wait that starts at 50 ms and doubles up to
/// [`PgInvalidations::max_backoff`] (5 s by default), back to 50 ms once a connection has
/// proved itself live.
///
/// At each connection it checks that the triggers are in place and enabled (schema
/// version 5, installed by [`PostgresStore::migrate`]); without them heartbeats would come
/// back while no write is notified, so it logs an error and never vouches for the cache,
/// which then reads through. Heartbeats carry a number no one else can predict: no other
/// instance's, no earlier connection's delivered late, and no forged one counts.
///
/// A connection dropped while stalled is released by sqlx in the background (its
/// `UNLISTEN`), which waits until the connection resumes or TCP gives up on it.
///
/// Notifications are database-wide: caches over other schemas of the same database also
/// drop the ids named (ids are random, so this costs a miss, never a wrong answer) and
/// every instance's heartbeats reach every listener (each ignores the others'). A payload
/// it does not understand empties the cache.
///
/// ```no_run
/// use core::time::Duration;
/// use keyward::store::{CachedStore, InvalidationStream, PgInvalidations, PostgresStore};
/// # async fn demo() -> Result<(), keyward::store::StoreError> {
/// let store = PostgresStore::connect("postgres://app@db/app").await?;
/// store.migrate().await?; // installs the triggers
/// let (cache, feed) = CachedStore::new(store.clone(), Duration::from_secs(2));
/// tokio::spawn(PgInvalidations::new(&store).run(feed));
/// // Build the KeyManager over `cache`.
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgInvalidations {
    options: PgConnectOptions,
    heartbeat: Option<Duration>,
    connect_timeout: Duration,
    max_backoff: Duration,
}

impl PgInvalidations {
    /// The channel that the triggers of schema version 5 notify and the stream listens on.
    pub const CHANNEL: &'static str = CHANNEL;

    /// A stream over the database of `store`, connecting as its pool does (same server,
    /// user, TLS and `search_path`) on a connection of its own, outside the pool.
    #[must_use]
    pub fn new(store: &PostgresStore) -> Self {
        Self::with_options(PgConnectOptions::clone(&store.pool().connect_options()))
    }

    /// A stream connecting with `options`.
    #[must_use]
    pub fn with_options(options: PgConnectOptions) -> Self {
        Self {
            options,
            heartbeat: None,
            connect_timeout: CONNECT_TIMEOUT,
            max_backoff: MAX_BACKOFF,
        }
    }

    /// Sends a heartbeat every `period` instead of every quarter of the cache's staleness
    /// bound. Keep it well within the bound (a third of it at most), or the cache will
    /// keep falling back to the database between heartbeats. Zero counts as 1 ms.
    #[must_use]
    pub fn heartbeat_every(mut self, period: Duration) -> Self {
        self.heartbeat = Some(period.max(Duration::from_millis(1)));
        self
    }

    /// How long connecting and subscribing may take before the attempt counts as failed
    /// (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The longest wait between two connection attempts (default 5 s).
    #[must_use]
    pub fn max_backoff(mut self, limit: Duration) -> Self {
        self.max_backoff = limit.max(MIN_BACKOFF);
        self
    }

    /// One connection's life: subscribe, start over, then relay notifications and
    /// heartbeats until the connection fails or stalls. Whether a heartbeat came back.
    async fn session(&self, feed: &CacheFeed, period: Duration) -> bool {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(self.connect_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(self.options.clone());
        let subscribe = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // A lost connection ends the session: this stream reconnects itself, so that
            // it can start over (`invalidate_all`) once the new subscription is in place.
            listener.eager_reconnect(false);
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match timeout(self.connect_timeout, subscribe).await {
            Ok(Ok(listener)) => listener,
            Ok(Err(e)) => {
                tracing::warn!(target: "keyward", error = %e, "cache invalidation stream cannot subscribe");
                return false;
            }
            Err(_) => {
                tracing::warn!(target: "keyward", "cache invalidation stream: subscribing timed out");
                return false;
            }
        };
        // Without the triggers (a database not migrated to version 5, or triggers disabled)
        // heartbeats would come back while no write is ever notified: never vouch then.
        match timeout(self.connect_timeout, triggers_enabled(&mut listener)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::error!(target: "keyward", "cache invalidation stream: the keyward_keys notification triggers are missing or disabled (run PostgresStore::migrate); the cache reads through");
                return false;
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "keyward", error = %e, "cache invalidation stream cannot check the triggers");
                return false;
            }
            Err(_) => {
                tracing::warn!(target: "keyward", "cache invalidation stream: checking the triggers timed out");
                return false;
            }
        }
        feed.invalidate_all();

        let mut live = false;
        let mut beats = Heartbeats::new(nonce());
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stalled_after = period.saturating_mul(4);
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => {
                        if let Some(sent) = relay(feed, &notification, &mut beats) {
                            feed.alive_since(sent);
                            live = true;
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(target: "keyward", "cache invalidation stream lost its connection");
                        return live;
                    }
                    Err(e) => {
                        tracing::warn!(target: "keyward", error = %e, "cache invalidation stream failed");
                        return live;
                    }
                },
                _ = ticks.tick() => {
                    if beats.oldest_sent().is_some_and(|at| at.elapsed() > stalled_after) {
                        tracing::warn!(target: "keyward", "cache invalidation stream stalled: no heartbeat came back");
                        return live;
                    }
                    let (payload, sent) = beats.next(feed.now());
                    let send = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(CHANNEL)
                        .bind(payload)
                        .execute(&mut listener);
                    match timeout(stalled_after, send).await {
                        Ok(Ok(_)) => beats.sent(sent),
                        Ok(Err(e)) => {
                            tracing::warn!(target: "keyward", error = %e, "cache invalidation stream cannot send a heartbeat");
                            return live;
                        }
                        Err(_) => {
                            tracing::warn!(target: "keyward", "cache invalidation stream stalled sending a heartbeat");
                            return live;
                        }
                    }
                }
            }
        }
    }
}

impl InvalidationStream for PgInvalidations {
    /// Listens, relays and reconnects until the future is dropped (it never returns).
    async fn run(self, feed: CacheFeed) {
        let period = self
            .heartbeat
            .unwrap_or_else(|| (feed.staleness() / 4).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT));
        let mut backoff = MIN_BACKOFF;
        loop {
            if self.session(&feed, period).await {
                backoff = MIN_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(self.max_backoff);
        }
    }
}

/// Whether the three notification triggers of schema version 5 are on `keyward_keys` (the
/// one `search_path` finds) and enabled.
async fn triggers_enabled(listener: &mut PgListener) -> Result<bool, sqlx::Error> {
    let enabled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger \
         WHERE tgrelid = to_regclass('keyward_keys') AND tgenabled <> 'D' \
           AND tgname IN ('keyward_keys_notify_row', 'keyward_keys_notify_change', \
                          'keyward_keys_notify_truncate')",
    )
    .fetch_one(&mut *listener)
    .await?;
    Ok(enabled == 3)
}

/// A random number no one else can predict: the heartbeats of each connection count from
/// one, so that neither another instance's heartbeats nor those of this stream's earlier
/// connections (held and delivered late) nor a forged one are taken for this connection's.
fn nonce() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the time and the process keep connections apart almost as well.
        let nanos = OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .cast_unsigned();
        return nanos ^ u128::from(std::process::id());
    }
    u128::from_le_bytes(bytes)
}

/// Applies one notification to the feed; for this stream's own heartbeat, the time it was
/// sent.
fn relay(
    feed: &CacheFeed,
    notification: &PgNotification,
    beats: &mut Heartbeats,
) -> Option<OffsetDateTime> {
    let payload = notification.payload();
    if let Some(beat) = payload.strip_prefix(HEARTBEAT) {
        return beats.returned(beat);
    }
    if payload == EVERYTHING {
        feed.invalidate_all();
    } else if let Ok(id) = payload.parse::<KeyId>() {
        feed.invalidate(&id);
    } else {
        // Not a key id: whatever changed, nothing cached can be vouched for.
        feed.invalidate_all();
    }
    None
}

/// The heartbeats this connection sent that have not come back, oldest first. Each carries
/// a number no one else can predict, so only the exact heartbeat sent proves anything.
struct Heartbeats {
    /// This connection's random number; each heartbeat's is this plus its count.
    base: u128,
    sent: u64,
    /// Nonce, time sent by the cache's clock, and when (for stall detection).
    outstanding: VecDeque<(u128, OffsetDateTime, Instant)>,
}

impl Heartbeats {
    fn new(base: u128) -> Self {
        Self {
            base,
            sent: 0,
            outstanding: VecDeque::new(),
        }
    }

    /// The payload of the next heartbeat, and its nonce with the time it is sent.
    fn next(&mut self, now: OffsetDateTime) -> (String, (u128, OffsetDateTime)) {
        self.sent = self.sent.wrapping_add(1);
        let nonce = self.base.wrapping_add(u128::from(self.sent));
        (format!("{HEARTBEAT}{nonce:032x}"), (nonce, now))
    }

    fn sent(&mut self, (nonce, at): (u128, OffsetDateTime)) {
        self.outstanding.push_back((nonce, at, Instant::now()));
    }

    fn oldest_sent(&self) -> Option<Instant> {
        self.outstanding.front().map(|&(_, _, at)| at)
    }

    /// A heartbeat came back (`beat` is the payload after the prefix): the time it was
    /// sent if it is one this connection sent and has not seen back, forgetting it and
    /// every one sent before it (delivered before it, or lost).
    fn returned(&mut self, beat: &str) -> Option<OffsetDateTime> {
        if beat.len() != 32 {
            return None;
        }
        let nonce = u128::from_str_radix(beat, 16).ok()?;
        let position = self.outstanding.iter().position(|&(n, _, _)| n == nonce)?;
        let (_, sent, _) = self.outstanding.drain(..=position).next_back()?;
        Some(sent)
    }
}

impl fmt::Debug for PgInvalidations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connect options hold the password: only the target is shown.
        f.debug_struct("PgInvalidations")
            .field("host", &self.options.get_host())
            .field("port", &self.options.get_port())
            .field("database", &self.options.get_database())
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_matched_to_their_sending_time() {
        let t0 = crate::testing::epoch();
        let mut beats = Heartbeats::new(0xabc);
        let (p1, s1) = beats.next(t0);
        beats.sent(s1);
        let (p2, s2) = beats.next(t0 + time::Duration::seconds(1));
        beats.sent(s2);
        let beat = |p: &str| p.strip_prefix(HEARTBEAT).expect("prefix").to_owned();
        // Another connection's heartbeat, a malformed or a guessed one proves nothing, and
        // retires nothing.
        assert_eq!(
            beats.returned(&format!("{:032x}", 0xabc_u128 + 1 + (1 << 64))),
            None
        );
        assert_eq!(beats.returned("not a heartbeat"), None);
        assert_eq!(beats.returned(&format!("{:032x}", 0xabc_u128 + 7)), None);
        assert_eq!(beats.outstanding.len(), 2);
        assert_eq!(beats.returned(&beat(&p1)), Some(t0));
        assert_eq!(beats.outstanding.len(), 1);
        assert_eq!(
            beats.returned(&beat(&p2)),
            Some(t0 + time::Duration::seconds(1))
        );
        assert!(beats.oldest_sent().is_none());
        // A repeat is no new proof.
        assert_eq!(beats.returned(&beat(&p2)), None);
    }

    #[test]
    fn a_later_heartbeat_retires_lost_earlier_ones() {
        let t0 = crate::testing::epoch();
        let mut beats = Heartbeats::new(7);
        let mut last = String::new();
        for n in 0..3 {
            let (payload, s) = beats.next(t0 + time::Duration::seconds(n));
            beats.sent(s);
            last = payload;
        }
        let beat = last.strip_prefix(HEARTBEAT).expect("prefix");
        assert_eq!(beats.returned(beat), Some(t0 + time::Duration::seconds(2)));
        assert!(beats.outstanding.is_empty());
    }

    #[test]
    fn debug_shows_no_password() {
        let options: PgConnectOptions = "postgres://app:hunter2@db:5433/keys"
            .parse()
            .expect("options");
        let shown = format!("{:?}", PgInvalidations::with_options(options));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db") && shown.contains("5433"), "{shown}");
    }
}
