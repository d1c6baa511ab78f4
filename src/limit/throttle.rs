//! [`FailureThrottle`]: failed verifications, counted per client address.

use core::fmt;
use core::time::Duration;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

use super::policy::LimitPolicy;
use super::{Decision, LimitError, Limiter, Subject};
use crate::clock::{Clock, SystemClock};

/// Throttles clients that present keys that do not verify, so guessing stays expensive.
///
/// Use it around verification, by client address:
///
/// 1. before verifying, [`FailureThrottle::blocked`]: if the client is blocked, answer `429`
///    without verifying (a correct guess must not get through a block);
/// 2. after a verification *failed* (invalid, malformed, revoked...),
///    [`FailureThrottle::record_failure`]: it charges one unit of
///    [`LimitPolicy::FAILED_VERIFICATIONS`] to the client, and when the budget is spent,
///    blocks the client until it has come back.
///
/// Successful verifications cost nothing here, so clients behind one address that hold valid
/// keys are not slowed down. The count lives in the wrapped limiter (shared across instances
/// with a Redis limiter); the block list is kept in this instance's memory, so each instance
/// admits at most one more guess per client after the shared budget is spent. It holds at
/// most [`FailureThrottle::MAX_BLOCKED`] clients; beyond that, the block that ends soonest is
/// dropped (the count in the limiter still refuses).
pub struct FailureThrottle<L> {
    limiter: L,
    limit: String,
    clock: Arc<dyn Clock>,
    blocked: Mutex<HashMap<IpAddr, OffsetDateTime>>,
}

impl<L: Limiter> FailureThrottle<L> {
    /// Most clients blocked at once.
    pub const MAX_BLOCKED: usize = 100_000;

    /// A throttle charging [`LimitPolicy::FAILED_VERIFICATIONS`] in `limiter`, on the system
    /// clock.
    #[must_use]
    pub fn new(limiter: L) -> Self {
        Self {
            limiter,
            limit: LimitPolicy::FAILED_VERIFICATIONS.to_owned(),
            clock: Arc::new(SystemClock),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Charges the limit `name` instead of [`LimitPolicy::FAILED_VERIFICATIONS`].
    #[must_use]
    pub fn with_limit(mut self, name: &str) -> Self {
        name.clone_into(&mut self.limit);
        self
    }

    /// Sets the clock for block deadlines (use the limiter's clock).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The wrapped limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }

    /// How long `client` stays blocked, if it is; charges nothing.
    #[must_use]
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let until = *blocked.get(&client)?;
        if until <= now {
            blocked.remove(&client);
            return None;
        }
        Duration::try_from(until - now).ok()
    }

    /// Charges one failed verification to `client`; a denial blocks the client until a
    /// retry may succeed.
    ///
    /// # Errors
    /// As for [`Limiter::check`].
    pub async fn record_failure(&self, client: IpAddr) -> Result<Decision, LimitError> {
        let decision = self
            .limiter
            .check(&Subject::client(client), &self.limit, 1)
            .await?;
        if let Some(retry_after) = decision.retry_after() {
            let until = self.clock.now().saturating_add(
                time::Duration::try_from(retry_after).unwrap_or(time::Duration::MAX),
            );
            let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
            if blocked.len() >= Self::MAX_BLOCKED && !blocked.contains_key(&client) {
                let now = self.clock.now();
                blocked.retain(|_, until| *until > now);
                if blocked.len() >= Self::MAX_BLOCKED {
                    let soonest = blocked
                        .iter()
                        .min_by_key(|(_, until)| **until)
                        .map(|(a, _)| *a);
                    if let Some(soonest) = soonest {
                        blocked.remove(&soonest);
                    }
                }
            }
            blocked.insert(client, until);
        }
        Ok(decision)
    }
}

impl<L: fmt::Debug> fmt::Debug for FailureThrottle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocked = self.blocked.lock().map_or(0, |b| b.len());
        f.debug_struct("FailureThrottle")
            .field("limiter", &self.limiter)
            .field("limit", &self.limit)
            .field("blocked", &blocked)
            .finish_non_exhaustive()
    }
}
