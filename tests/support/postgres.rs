//! The PostgreSQL test server (from `KEYWARD_TEST_POSTGRES_URL`), a schema of its own per
//! test, and a TCP proxy that can cut or stall the connections through it: shared by the
//! PostgreSQL test files.
#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use keyward::store::PostgresStore;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) const URL_VAR: &str = "KEYWARD_TEST_POSTGRES_URL";

/// The test server's URL.
///
/// # Panics
/// When the variable is absent: these tests never pass without a server.
pub(crate) fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set: these tests need a PostgreSQL server. Start one and run \
             `{URL_VAR}=postgres://postgres:postgres@127.0.0.1:5432/keyward_test cargo test \
             --all-features` (the database must exist; .ci/run shows how CI installs and \
             starts PostgreSQL from Debian packages). Plain `cargo test` does not build these \
             tests."
        ),
    }
}

pub(crate) fn server_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&server_url()).expect("valid KEYWARD_TEST_POSTGRES_URL")
}

/// A schema of its own for one test (or one conformance check), dropped by [`Schema::drop`].
pub(crate) struct Schema {
    pub(crate) name: String,
    pub(crate) admin: PgPool,
}

impl Schema {
    pub(crate) async fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "keyward_test_{}_{nanos}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(server_options())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .expect("create schema");
        Self { name, admin }
    }

    /// Connection options that work in this schema, through `via` instead of the server
    /// when given.
    pub(crate) fn options(&self, via: Option<SocketAddr>) -> PgConnectOptions {
        let options = server_options().options([("search_path", self.name.as_str())]);
        match via {
            Some(addr) => options.host(&addr.ip().to_string()).port(addr.port()),
            None => options,
        }
    }

    /// A store with a pool of `connections` over this schema.
    pub(crate) async fn store(&self, connections: u32) -> PostgresStore {
        self.store_via(None, connections).await
    }

    /// A store whose pool connects through `via` (or straight to the server).
    pub(crate) async fn store_via(
        &self,
        via: Option<SocketAddr>,
        connections: u32,
    ) -> PostgresStore {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(self.options(via))
            .await
            .expect("connect");
        PostgresStore::from_pool(pool)
    }

    pub(crate) async fn migrated(&self, connections: u32) -> PostgresStore {
        let store = self.store(connections).await;
        store.migrate().await.expect("migrate");
        store
    }

    pub(crate) async fn drop(self) {
        let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&self.admin)
            .await;
        self.admin.close().await;
    }
}

/// What a [`Proxy`] does with its connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Forwards every byte.
    Up,
    /// Closes every connection and refuses new ones.
    Cut,
    /// Keeps every socket open (new ones too) and forwards nothing: bytes are held.
    Stalled,
}

/// A TCP proxy between a pool and the server that the test can cut (closing every
/// connection and refusing new ones), stall (sockets open, no byte forwarded) and restore;
/// it counts the bytes clients sent through it.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    mode: watch::Sender<Mode>,
    sent: Arc<AtomicU64>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, state) = watch::channel(Mode::Up);
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *state.borrow() == Mode::Cut {
                    continue; // cut: close at once
                }
                let state = state.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let up = pump(client_read, server_write, state.clone(), Some(counter));
                    let down = pump(server_read, client_write, state, None);
                    // Either direction ending (or a cut) closes both.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Self { addr, mode, sent }
    }

    /// Closes every connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Holds every byte, keeping the sockets open.
    pub(crate) fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    /// Forwards again (held bytes go through).
    pub(crate) fn restore(&self) {
        self.mode.send_replace(Mode::Up);
    }

    /// Bytes clients sent through the proxy so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` while the mode allows: holds what it read while stalled, ends on
/// a cut or when either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    counter: Option<Arc<AtomicU64>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = mode.wait_for(|m| *m == Mode::Cut) => return,
        };
        // Hold the bytes while stalled; give up on a cut.
        match mode.wait_for(|m| *m != Mode::Stalled).await {
            Ok(m) if *m == Mode::Up => {}
            _ => return,
        }
        if let Some(counter) = &counter {
            counter.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The test server's address, for a [`Proxy`].
pub(crate) async fn upstream() -> SocketAddr {
    let options = server_options();
    let host = options.get_host().to_owned();
    tokio::net::lookup_host((host.as_str(), options.get_port()))
        .await
        .expect("resolve the server")
        .next()
        .expect("server address")
}
