//! The Redis limiter against a real server: one budget shared by several instances, the
//! retry time, and what happens when Redis dies and comes back.
//!
//! The shared tests read the server's URL from `KEYWARD_TEST_REDIS_URL` (CI starts one) and
//! fail when it is absent. The outage test starts its own `redis-server` on a free port.
//!
//! Redis decides with its own clock (real time), so these tests use limits per day: the
//! budget refills one unit every 24 minutes, far longer than a test runs.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::limit::{
    LimitError, LimitPolicy, Limiter, Rate, RedisFallback, RedisLimiter, Subject,
};
use keyward::testing::random_id;

fn redis_url() -> String {
    std::env::var("KEYWARD_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "KEYWARD_TEST_REDIS_URL is not set: start redis-server and set it, \
             e.g. KEYWARD_TEST_REDIS_URL=redis://127.0.0.1:6379 (.ci/run does both)"
        )
    })
}

fn policy() -> LimitPolicy {
    LimitPolicy::empty().limit("writes", Rate::per_day(60).expect("test setup"))
}

/// A prefix of its own for every test run, so runs never share state.
fn prefix() -> String {
    format!("keyward-test:{}:", random_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget() {
    let url = redis_url();
    let prefix = prefix();
    let a = RedisLimiter::connect(&url, policy())
        .expect("test setup")
        .with_key_prefix(&prefix);
    let b = RedisLimiter::connect(&url, policy())
        .expect("test setup")
        .with_key_prefix(&prefix);
    let key = Subject::key_id(random_id());
    let mut admitted = 0;
    for i in 0..120 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        let d = limiter.check(&key, "writes", 1).await.expect("test setup");
        admitted += usize::from(d.is_allowed());
    }
    assert!(
        !a.is_degraded() && !b.is_degraded(),
        "redis answered every time"
    );
    assert_eq!(admitted, 60);

    // Concurrently too: 120 attempts from both instances at once admit exactly 60.
    let key = Subject::key_id(random_id());
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..120 {
        let limiter = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let key = key.clone();
        attempts.spawn(async move {
            limiter
                .check(&key, "writes", 1)
                .await
                .expect("test setup")
                .is_allowed()
        });
    }
    let admitted = attempts
        .join_all()
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(admitted, 60);
}

#[tokio::test]
async fn the_retry_time_is_one_refill_interval() {
    let limiter = RedisLimiter::connect(&redis_url(), policy())
        .expect("test setup")
        .with_key_prefix(&prefix());
    let key = Subject::key_id(random_id());
    let first = limiter.check(&key, "writes", 1).await.expect("test setup");
    assert_eq!((first.limit(), first.remaining()), (60, 59));
    let interval = Duration::from_secs(24 * 60);
    assert!(
        first.reset_after() <= interval && first.reset_after() > interval - Duration::from_secs(5)
    );
    assert_eq!(
        limiter
            .check(&key, "writes", 59)
            .await
            .expect("test setup")
            .remaining(),
        0
    );
    let denied = limiter.check(&key, "writes", 1).await.expect("test setup");
    let retry = denied.retry_after().expect("denied");
    // The first unit comes back one interval after the first request (real server time).
    assert!(
        retry <= interval && retry > interval - Duration::from_secs(5),
        "{retry:?}"
    );
    assert!(denied.reset_after() > Duration::from_secs(86_400 - 5));
    assert!(matches!(
        limiter.check(&key, "writes", 61).await,
        Err(LimitError::CostTooHigh { .. })
    ));
}

/// A `redis-server` of our own on a free port, killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed (CI installs it: apt-get install redis-server)",
            );
        let server = Self { port, child };
        // Wait until it accepts connections (readiness, not timing: bounded at 10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn kill(mut self) {
        self.child.kill().expect("kill redis-server");
        self.child.wait().expect("reap redis-server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn when_redis_dies_limits_fall_back_and_recover() {
    let port = free_port();
    let server = Server::start(port);
    let url = format!("redis://127.0.0.1:{}", server.port);
    let timeout = Duration::from_millis(200);
    let falls_back =
        RedisLimiter::connect_with_timeout(&url, policy(), timeout).expect("test setup");
    let fails_closed = RedisLimiter::connect_with_timeout(&url, policy(), timeout)
        .expect("test setup")
        .with_fallback(RedisFallback::FailClosed);
    let key = Subject::key_id(random_id());
    assert_eq!(
        falls_back
            .check(&key, "writes", 10)
            .await
            .expect("test setup")
            .remaining(),
        50
    );
    assert_eq!(
        fails_closed
            .check(&key, "writes", 1)
            .await
            .expect("test setup")
            .remaining(),
        49
    );
    assert!(!falls_back.is_degraded());

    server.kill();
    // Rate limits: this instance's memory answers, with its own full budget.
    for expected in (0..60).rev() {
        let d = falls_back
            .check(&key, "writes", 1)
            .await
            .expect("test setup");
        assert_eq!(d.remaining(), expected);
    }
    assert!(
        !falls_back
            .check(&key, "writes", 1)
            .await
            .expect("test setup")
            .is_allowed()
    );
    assert!(falls_back.is_degraded());
    // Fail closed: refused, with the cause kept.
    match fails_closed.check(&key, "writes", 1).await {
        Err(e @ LimitError::Unavailable(_)) => {
            assert!(std::error::Error::source(&e).is_some());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // Redis comes back (empty: it saved nothing): both recover once reconnected.
    let _server = Server::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(d) = fails_closed.check(&key, "writes", 1).await {
            assert_eq!(d.remaining(), 59, "a fresh server holds a fresh budget");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = falls_back
            .check(&key, "writes", 1)
            .await
            .expect("test setup");
        if !falls_back.is_degraded() {
            assert_eq!(d.remaining(), 58, "shared again");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
