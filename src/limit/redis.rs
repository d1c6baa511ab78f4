//! [`RedisLimiter`]: one GCRA budget shared by every instance, through one Redis.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::memory::MemoryLimiter;
use super::policy::LimitPolicy;
use super::{Decision, LimitError, Limiter, Subject};

/// One decision, atomically on the server. The time is the server's (`TIME`), so every
/// instance shares one clock; the state is the theoretical arrival time (TAT, in
/// microseconds since the epoch) under the subject's key, expiring when the budget is full
/// again. Returns `{1, remaining, reset_us}` or `{0, retry_us, reset_us}`.
const GCRA: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + cost * t
local allow_at = new_tat - limit * t
if allow_at > now then
  return {0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now + limit * t - new_tat) / t), new_tat - now}
";

/// What a [`RedisLimiter`] does when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisFallback {
    /// Count in this instance's memory until Redis answers again (the default): each
    /// instance then enforces the whole limit on its own, so the service as a whole may
    /// admit up to `instances × limit` while Redis is down.
    #[default]
    Memory,
    /// Refuse with [`LimitError::Unavailable`] (the HTTP layer answers `503`).
    FailClosed,
}

/// Rate limits shared by every instance of a service through one Redis (feature `redis`).
///
/// Each decision is one Lua script run atomically on the server (GCRA, with the server's
/// clock), so two instances never both spend the last unit. When Redis is unreachable or
/// does not answer within the timeout, the limiter falls back to a [`MemoryLimiter`] over
/// the same policy, or fails closed ([`RedisFallback`]); the first failure and the recovery
/// are logged (`tracing::warn!` / `info!`). The connection is re-established in the
/// background.
///
/// Usage quotas are not kept here: they live with the key
/// ([`KeyManager::consume`](crate::KeyManager::consume)) and always fail closed.
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    policy: Arc<LimitPolicy>,
    fallback: Option<MemoryLimiter>,
    prefix: String,
    degraded: AtomicBool,
}

impl RedisLimiter {
    /// The default timeout for connecting and for each answer.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// A limiter on the Redis at `url` (such as `redis://127.0.0.1:6379`), falling back to
    /// memory. Connects lazily: Redis need not be up yet. Must be called inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`LimitError::Unavailable`] when `url` is not a Redis URL, or when called outside a
    /// tokio runtime.
    pub fn connect(url: &str, policy: LimitPolicy) -> Result<Self, LimitError> {
        Self::connect_with_timeout(url, policy, Self::DEFAULT_TIMEOUT)
    }

    /// As [`RedisLimiter::connect`], with a timeout for connecting and for each answer.
    ///
    /// # Errors
    /// [`LimitError::Unavailable`] when `url` is not a Redis URL, or when called outside a
    /// tokio runtime.
    pub fn connect_with_timeout(
        url: &str,
        policy: LimitPolicy,
        timeout: Duration,
    ) -> Result<Self, LimitError> {
        // The connection manager spawns its reconnection task on the current runtime.
        tokio::runtime::Handle::try_current().map_err(unavailable)?;
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        let fallback = Some(MemoryLimiter::new(policy.clone()));
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            policy: Arc::new(policy),
            fallback,
            prefix: "keyward:rl:".to_owned(),
            degraded: AtomicBool::new(false),
        })
    }

    /// Sets what happens when Redis cannot answer.
    #[must_use]
    pub fn with_fallback(mut self, fallback: RedisFallback) -> Self {
        self.fallback = match fallback {
            RedisFallback::Memory => Some(MemoryLimiter::new(LimitPolicy::clone(&self.policy))),
            RedisFallback::FailClosed => None,
        };
        self
    }

    /// Prefixes every Redis key (default `keyward:rl:`); keys are
    /// `<prefix><limit>:<subject>`, such as `keyward:rl:writes:key:bUiB7xK2pQ9m`.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &LimitPolicy {
        &self.policy
    }

    /// Whether the last decision was made without Redis.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn degrade(
        &self,
        error: redis::RedisError,
        subject: &Subject,
        limit: &str,
        cost: u32,
    ) -> Result<Decision, LimitError> {
        let first = !self.degraded.swap(true, Ordering::Relaxed);
        match &self.fallback {
            Some(memory) => {
                if first {
                    tracing::warn!(%error, "redis unavailable; rate limits fall back to this instance's memory");
                }
                memory.check_now(subject, limit, cost)
            }
            None => {
                if first {
                    tracing::warn!(%error, "redis unavailable; rate-limited requests are refused");
                }
                Err(unavailable(error))
            }
        }
    }
}

fn decode(answer: &[i64], limit: u32) -> Result<Decision, LimitError> {
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    match *answer {
        [1, remaining, reset] => Ok(Decision::Allowed {
            limit,
            remaining: u32::try_from(remaining).unwrap_or(0).min(limit),
            reset_after: micros(reset),
        }),
        [0, retry, reset] => Ok(Decision::Denied {
            limit,
            retry_after: micros(retry),
            reset_after: micros(reset),
        }),
        _ => Err(unavailable(UnexpectedAnswer)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unexpected answer from the rate-limit script")]
struct UnexpectedAnswer;

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> LimitError {
    LimitError::Unavailable(Box::new(error))
}

impl Limiter for RedisLimiter {
    /// One run of the script on the server; on failure, the fallback.
    async fn check(
        &self,
        subject: &Subject,
        limit: &str,
        cost: u32,
    ) -> Result<Decision, LimitError> {
        let rate = self.policy.charge(subject, limit, cost)?.rate;
        let key = format!("{}{limit}:{subject}", self.prefix);
        let interval_us = u64::try_from(rate.interval().as_micros()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        let answer: Result<Vec<i64>, redis::RedisError> = self
            .script
            .key(key)
            .arg(interval_us)
            .arg(rate.limit())
            .arg(cost)
            .invoke_async(&mut conn)
            .await;
        match answer {
            Ok(answer) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis answers again; rate limits are shared again");
                }
                decode(&answer, rate.limit())
            }
            Err(error) => self.degrade(error, subject, limit, cost),
        }
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("policy", &self.policy)
            .field("prefix", &self.prefix)
            .field("fallback", &self.fallback.is_some())
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}
