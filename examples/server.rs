//! A Toado-like ticket service protected by keyward: Bearer keys with implied scopes,
//! resource restrictions, an admin API, a session cookie for headless tests, and an MCP
//! server (`/mcp`, Streamable HTTP, on `rmcp` through `keyward::mcp`).
//!
//! ```text
//! KEYWARD_ADMIN_KEY_FILE=/tmp/admin.key cargo run --example server --features axum,rate-limit,secret-scanning,sqlite
//! curl -H "Authorization: Bearer $(cat /tmp/admin.key)" localhost:3000/tickets
//! ```
//!
//! Environment: `KEYWARD_DATABASE_URL` (default `sqlite://keyward-example.db?mode=rwc`;
//! `memory:`, or a `postgres://` URL with the `postgres` feature: [`AnyStore::open`]), `KEYWARD_SCANNING_KEYS_FILE` (GitHub's secret-scanning public keys as JSON,
//! `{"public_keys": [...]}`: mounts `POST /secret-scanning/github`), `KEYWARD_ADDR` (default `127.0.0.1:3000`), `KEYWARD_ADMIN_KEY_FILE` (issue a
//! management key with scope `*` at start and write it there, mode 0600, before listening),
//! `KEYWARD_PEPPER` (`[id:]base64`; a random one is used when absent, so keys do not survive
//! a restart), `KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE` (default 10: failed verifications
//! a client address may make a minute, on every route, before it gets 429),
//! `KEYWARD_AUDIT_LOG_FILE` (also append every audit event there as a JSON line).
//! `KEYWARD_LEGACY_PREFIXES` (comma-separated, such as `old_sk`): also verify tokens with
//! these prefixes, imported as whole-token SHA-256 keys by `keytool import` into the same
//! database with the same pepper; key listings say `"legacy": true` for a key still on its
//! foreign digest. `KEYWARD_TRUSTED_PROXIES` (comma-separated networks, such as
//! `10.0.0.0/8`): believe `X-Forwarded-For` from these peers only (by default the header
//! is ignored and the connection's peer is the client). `KEYWARD_MAX_KEYS_PER_TENANT`: at
//! most this many live keys per company (409 `limit_reached` past it).
//! `KEYWARD_CACHE_STALENESS_MS` (milliseconds): verify from a cache of the database fed by
//! its change notifications (PostgreSQL `LISTEN/NOTIFY`, SQLite `data_version`), serving a
//! record only while the notifications proved themselves live within that many
//! milliseconds, with last uses written behind once a second; unset (or with `memory:`),
//! every verification reads the database. A database that does not answer within 2 s
//! makes verification fail with 503.
//!
//! Every `/admin/keys` route acts as the calling key ([`KeyManager::acting_as`]): a key
//! outside the caller's reach is answered exactly like an unknown id. `POST
//! /api/keys/delegate` lets a key holding `keys:delegate` mint a narrower child of itself,
//! refused as soon as any of its ancestors stops verifying.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64ct::{Base64UrlUnpadded, Encoding};
use keyward::audit::{AuditEvent, AuditJournal, AuditQuery, AuditSink, Channel, TracingAudit};
use keyward::axum::{
    KeywardLayer, LimitClass, RateLimit, RequireScope, error_response, request_context,
    request_context_behind,
};
use keyward::leak::scanning::{PublicKeys, ScanningOrigin, ScanningReceiver};
use keyward::limit::{FailureThrottle, LimitPolicy, MemoryLimiter, Rate};
use keyward::mcp::{SessionBinding, ToolScopes};
use keyward::{
    Hasher, IssueRequest, Issued, KeyFormat, KeyId, KeyManager, KeyRecord, Pepper, RequestContext,
    ScopeCatalog, ScopeSet, Verified,
    http::{AuthError, CredentialSource},
    http::{RequestParts, WorkspaceSource, admits_workspace},
    manager::{EditError, KeyEdit},
    manager::{IssueError, LifecycleError, VerifyError},
    network::{Networks, TrustedProxies},
    policy::{Expiry, ExpiryPreset, IssuancePolicy},
    record::KeyStatus,
    scope::{Resource, Restrictions},
    store::{AnyStore, CachedStore, InvalidationStream, ListFilter, Page, StoreError},
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext as McpContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

const REALM: &str = "toado";

/// Live sessions one key may hold; the oldest is dropped when another is made.
const MAX_SESSIONS_PER_KEY: usize = 16;
/// The longest a session lives (never longer than its key).
const SESSION_LIFETIME: Duration = Duration::hours(12);
/// Failed verifications a client may make a minute, unless
/// `KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE` says otherwise.
const DEFAULT_FAILED_VERIFICATIONS_PER_MINUTE: u32 = 10;
/// Audit events that may wait for the database; more are dropped and counted.
const AUDIT_QUEUE: usize = 100_000;

struct App {
    manager: Arc<KeyManager<Store>>,
    sessions: Mutex<Sessions>,
    tickets: Mutex<Vec<Ticket>>,
    /// Toado's defaults: 600 reads and 60 writes a minute per key, and
    /// `KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE` failed verifications a minute per client.
    limiter: Arc<MemoryLimiter>,
    /// Failed verifications per client address, shared by every route.
    failures: Arc<FailureThrottle<Arc<MemoryLimiter>>>,
    /// GitHub's secret-scanning public keys, from `KEYWARD_SCANNING_KEYS_FILE`.
    scanning: Option<ScanningReceiver<Store, PublicKeys>>,
    /// The scope catalog as `GET /admin/scopes` answers it.
    scopes: Value,
    /// The audit log's queue, flushed to the database every second and at shutdown.
    journal: AuditJournal,
    /// The proxies whose `X-Forwarded-For` is believed, from `KEYWARD_TRUSTED_PROXIES`.
    proxies: Option<TrustedProxies>,
    /// The MCP sessions and the keys they belong to, set when `/mcp` is mounted: a key
    /// revoked or disabled through the admin API has its sessions closed at once.
    mcp_sessions: std::sync::OnceLock<SessionBinding<Store, LocalSessionManager>>,
}

/// Sessions by the SHA-256 of their cookie value (the value itself is never kept).
#[derive(Default)]
struct Sessions {
    by_hash: HashMap<[u8; 32], Session>,
    /// Creation order, to find a key's oldest session.
    next_seq: u64,
}

struct Session {
    proof: Verified,
    expires_at: OffsetDateTime,
    seq: u64,
}

impl Sessions {
    /// Adds a session for `proof`'s key, after dropping every expired session and, when the
    /// key is at its cap, its oldest ones.
    fn insert(
        &mut self,
        hash: [u8; 32],
        proof: Verified,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        self.by_hash.retain(|_, s| s.expires_at > now);
        let key = proof.key_id();
        let mut mine: Vec<(u64, [u8; 32])> = self
            .by_hash
            .iter()
            .filter(|(_, s)| s.proof.key_id() == key)
            .map(|(h, s)| (s.seq, *h))
            .collect();
        if mine.len() >= MAX_SESSIONS_PER_KEY {
            mine.sort_unstable();
            let excess = mine.len() + 1 - MAX_SESSIONS_PER_KEY;
            for (_, h) in mine.into_iter().take(excess) {
                self.by_hash.remove(&h);
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_hash.insert(
            hash,
            Session {
                proof,
                expires_at,
                seq,
            },
        );
    }

    /// Drops every session of a key that no longer works.
    fn drop_key(&mut self, id: &KeyId) {
        self.by_hash.retain(|_, s| s.proof.key_id() != *id);
    }
}

#[derive(Clone, serde::Serialize)]
struct Ticket {
    id: u64,
    company: String,
    project: String,
    title: String,
    comments: Vec<String>,
    assignee: Option<String>,
    /// The key that created the ticket and how it came in (`null` for the seeded tickets).
    created_by: Option<CreatedBy>,
}

#[derive(Clone, serde::Serialize)]
struct CreatedBy {
    key_id: KeyId,
    channel: Channel,
}

impl Ticket {
    fn resource(&self) -> Option<Resource> {
        format!("company:{}/project:{}", self.company, self.project)
            .parse()
            .ok()
    }
}

fn catalog() -> Result<ScopeCatalog, keyward::scope::CatalogError> {
    ScopeCatalog::builder()
        .scopes([
            "read",
            "comments",
            "tickets:write",
            "tickets:assign",
            "keys:manage",
            "keys:delegate",
        ])
        .describe("read", "Read tickets, projects and comments.")
        .describe("comments", "Post comments. Includes read.")
        .describe(
            "tickets:write",
            "Create and edit tickets. Includes comments and read.",
        )
        .describe("tickets:assign", "Assign tickets. Includes read.")
        .describe(
            "keys:manage",
            "Issue, list, edit, disable, rotate and revoke the API keys within your own reach.",
        )
        .describe(
            "keys:delegate",
            "Mint narrower child keys of this key (for agents and CI jobs).",
        )
        .implies("comments", "read")
        .implies("tickets:write", "comments")
        .implies("tickets:assign", "read")
        .build()
}

/// `KEYWARD_LEGACY_PREFIXES` (comma-separated, such as `old_sk`): prefixes of keys issued by
/// another system and imported by `keytool import` (whole-token SHA-256), verified beside
/// the service's own.
fn legacy_formats() -> Result<keyward::key::LegacyFormats, keyward::key::LegacyError> {
    let list = std::env::var("KEYWARD_LEGACY_PREFIXES").unwrap_or_default();
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .try_fold(
            keyward::key::LegacyFormats::new(),
            keyward::key::LegacyFormats::sha256,
        )
}

/// Calendar months by default (3), never-expiring keys allowed, and
/// `KEYWARD_MAX_KEYS_PER_TENANT` (unset: no cap) live keys per company.
fn issuance_policy() -> Result<IssuancePolicy, String> {
    let policy = IssuancePolicy::default()
        .allow_never_expiring(true)
        .default_preset(ExpiryPreset::Months3);
    match std::env::var("KEYWARD_MAX_KEYS_PER_TENANT") {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .map(|cap| policy.max_live_keys_per_tenant(cap))
            .map_err(|e| format!("KEYWARD_MAX_KEYS_PER_TENANT must be a whole number: {e}")),
        Err(_) => Ok(policy),
    }
}

/// `KEYWARD_TRUSTED_PROXIES` (comma-separated networks): the peers whose `X-Forwarded-For`
/// names the client; `None` when unset, so the header is ignored.
fn trusted_proxies() -> Result<Option<TrustedProxies>, keyward::network::NetworkError> {
    let Ok(list) = std::env::var("KEYWARD_TRUSTED_PROXIES") else {
        return Ok(None);
    };
    let networks: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if networks.is_empty() {
        return Ok(None);
    }
    TrustedProxies::new(networks).map(Some)
}

/// Toado's limits, with the budget of failed verifications from the environment.
fn limit_policy() -> Result<LimitPolicy, Box<dyn std::error::Error>> {
    let per_minute = match std::env::var("KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE") {
        Ok(text) => text.trim().parse::<u32>().map_err(|e| {
            format!("KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE must be a positive integer: {e}")
        })?,
        Err(_) => DEFAULT_FAILED_VERIFICATIONS_PER_MINUTE,
    };
    let rate = Rate::per_minute(per_minute)
        .map_err(|e| format!("KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE: {e}"))?;
    Ok(LimitPolicy::default().limit(LimitPolicy::FAILED_VERIFICATIONS, rate))
}

/// The service's key store: the database behind a cache (turned off unless
/// `KEYWARD_CACHE_STALENESS_MS` is set).
type Store = CachedStore<AnyStore>;

/// Last-use times waiting for the next flush, at most.
const MAX_PENDING_TOUCHES: usize = 100_000;

/// `store` behind a cache with the staleness bound `KEYWARD_CACHE_STALENESS_MS`, its
/// invalidation stream spawned; without the variable (or for the memory store, which
/// needs none), a cache that is off: every read goes to the database, as without one.
fn cached(store: AnyStore) -> Result<Store, String> {
    let Ok(text) = std::env::var("KEYWARD_CACHE_STALENESS_MS") else {
        return Ok(CachedStore::new(store, std::time::Duration::ZERO).0);
    };
    let ms: u64 = text
        .trim()
        .parse()
        .ok()
        .filter(|&ms| ms > 0)
        .ok_or_else(|| {
            format!(
                "KEYWARD_CACHE_STALENESS_MS must be a positive number of milliseconds, not {text:?}"
            )
        })?;
    let Some(stream) = store.invalidations() else {
        eprintln!("KEYWARD_CACHE_STALENESS_MS ignored: the memory store needs no cache");
        return Ok(CachedStore::new(store, std::time::Duration::ZERO).0);
    };
    let (cache, feed) = CachedStore::builder(store, std::time::Duration::from_millis(ms))
        .write_behind(MAX_PENDING_TOUCHES)
        .build();
    tokio::spawn(stream.run(feed));
    Ok(cache)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pepper = match std::env::var("KEYWARD_PEPPER") {
        Ok(text) => Pepper::from_text(&text)?,
        Err(_) => Pepper::random("ephemeral")?,
    };
    let url = std::env::var("KEYWARD_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://keyward-example.db?mode=rwc".to_owned());
    let store = cached(AnyStore::open(&url).await?)?;
    let catalog = catalog()?;
    let journal = AuditJournal::new(AUDIT_QUEUE);
    let scopes = serde_json::to_value(catalog.listing())?;
    let manager = KeyManager::new(store, KeyFormat::new(["tak"])?, Hasher::fast(pepper))
        .with_catalog(catalog)
        .with_policy(issuance_policy()?)
        .with_audit((Audit::from_env()?, journal.clone()))
        .with_legacy(legacy_formats()?)?;
    let manager = Arc::new(manager);
    let scanning = match std::env::var("KEYWARD_SCANNING_KEYS_FILE") {
        Ok(path) => {
            let keys = PublicKeys::from_json(&std::fs::read(&path)?)?;
            Some(ScanningReceiver::new(
                Arc::clone(&manager),
                keys,
                ScanningOrigin::github(),
            ))
        }
        Err(_) => None,
    };
    let limiter = Arc::new(MemoryLimiter::new(limit_policy()?));
    let app = Arc::new(App {
        manager,
        sessions: Mutex::new(Sessions::default()),
        tickets: Mutex::new(seed_tickets()),
        failures: Arc::new(FailureThrottle::new(Arc::clone(&limiter))),
        limiter,
        scanning,
        scopes,
        journal,
        proxies: trusted_proxies()?,
        mcp_sessions: std::sync::OnceLock::new(),
    });

    if let Ok(path) = std::env::var("KEYWARD_ADMIN_KEY_FILE") {
        let request = IssueRequest::new("management", "admin")
            .scopes(ScopeSet::all())
            .expiry(Expiry::Never);
        let issued = app
            .manager
            .issue(request, &RequestContext::new().actor("server start"))
            .await?;
        write_secret_file(&path, issued.key.expose_secret())?;
        println!(
            "management key {} written to {path}",
            issued.record.preview()
        );
    }

    let addr: SocketAddr = std::env::var("KEYWARD_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let flusher = tokio::spawn(flush_audit(Arc::clone(&app)));
    axum::serve(
        listener,
        router(Arc::clone(&app)).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await?;
    // Nothing recorded before the signal is lost: write the audit queue out.
    flusher.abort();
    if let Err(e) = app.journal.flush_to(app.manager.store()).await {
        eprintln!("could not flush the audit log at shutdown: {e}");
    }
    if let Err(e) = app.manager.store().flush_touches().await {
        eprintln!("could not write the last uses at shutdown: {e}");
    }
    Ok(())
}

/// Writes the audit queue and the last uses collected by the cache to the database every
/// second.
async fn flush_audit(app: Arc<App>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        interval.tick().await;
        if let Err(e) = app.journal.flush_to(app.manager.store()).await {
            tracing::warn!(error = %e, "could not flush the audit log; retrying");
        }
        if let Err(e) = app.manager.store().flush_touches().await {
            tracing::warn!(error = %e, "could not write last uses; retrying");
        }
    }
}

/// Resolves on SIGTERM (or Ctrl-C).
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn write_secret_file(path: &str, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()
}

fn seed_tickets() -> Vec<Ticket> {
    [
        ("42", "7", "Printer on fire"),
        ("42", "8", "Login page slow"),
        ("4", "1", "Typo on invoice"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (c, p, t))| Ticket {
        id: i as u64 + 1,
        company: c.to_owned(),
        project: p.to_owned(),
        title: t.to_owned(),
        comments: Vec::new(),
        assignee: None,
        created_by: None,
    })
    .collect()
}

/// Logs audit events through `tracing`, and appends them as JSON lines to
/// `KEYWARD_AUDIT_LOG_FILE` when it is set.
struct Audit {
    file: Option<Mutex<std::fs::File>>,
}

impl Audit {
    fn from_env() -> std::io::Result<Self> {
        let file = match std::env::var("KEYWARD_AUDIT_LOG_FILE") {
            Ok(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            Err(_) => None,
        };
        Ok(Self { file })
    }
}

impl AuditSink for Audit {
    fn record(&self, event: &AuditEvent) {
        TracingAudit.record(event);
        if let Some(file) = &self.file {
            use std::io::Write;
            let Ok(mut line) = serde_json::to_vec(event) else {
                return;
            };
            line.push(b'\n');
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = file.write_all(&line) {
                tracing::warn!(error = %e, "could not write the audit log file");
            }
        }
    }
}

fn scope(s: &'static str) -> keyward::Scope {
    s.parse()
        .unwrap_or_else(|e| panic!("static scope {s}: {e}"))
}

fn router(app: Arc<App>) -> Router {
    let mut bearer = KeywardLayer::new(Arc::clone(&app.manager))
        .realm(REALM)
        .workspace(workspaces())
        .throttle_failures(Arc::clone(&app.failures));
    if let Some(proxies) = &app.proxies {
        bearer = bearer.trusted_proxies(proxies.clone());
    }
    // Every GET is a read, every POST outside /admin a write (charged after verification).
    let limits = RateLimit::new(Arc::clone(&app.limiter));
    let admin = Router::new()
        .route("/admin/keys", post(admin_issue).get(admin_list))
        .route("/admin/keys/{id}/disable", post(admin_disable))
        .route("/admin/keys/{id}/enable", post(admin_enable))
        .route("/admin/keys/{id}/revoke", post(admin_revoke))
        .route("/admin/keys/{id}/rotate", post(admin_rotate))
        .route(
            "/admin/keys/{id}",
            axum::routing::delete(admin_delete).patch(admin_edit),
        )
        .route("/admin/scopes", get(admin_scopes))
        .route("/admin/audit", get(admin_audit))
        .route_layer(RequireScope::new(scope("keys:manage")))
        .layer(bearer.clone());
    let bearer_only = Router::new()
        .route("/api/auth/automated-login", post(automated_login))
        .route(
            "/api/keys/delegate",
            post(delegate).route_layer(RequireScope::new(scope("keys:delegate"))),
        )
        .layer(limits.clone())
        .layer(bearer.clone());
    let mcp = mcp_router(&app, bearer.channel(Channel::MCP), limits.clone());
    let api = Router::new()
        .route("/tickets", get(list_tickets).post(create_ticket))
        .route("/tickets/{id}/comments", post(comment))
        .route("/tickets/{id}/assign", post(assign))
        .route("/companies/{c}/projects/{p}/tickets", get(project_tickets))
        .layer(limits)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            bearer_or_session,
        ));
    // Secret-scanning alerts authenticate by their signature, not by a key.
    let scanning = Router::new().route("/secret-scanning/github", post(secret_scanning));
    Router::new()
        .merge(admin)
        .merge(bearer_only)
        .merge(mcp)
        .merge(api)
        .merge(scanning)
        .with_state(app)
}

/// Workspaces are named by the host: a key of tenant `acme` works at `acme.localhost[:port]`
/// and is refused (as an unknown key) at another tenant's host; `localhost` itself and IP
/// addresses name no workspace.
fn workspaces() -> WorkspaceSource {
    WorkspaceSource::host_suffix("localhost")
}

/// The workspace a request's `Host` names, if any.
fn workspace_of(req: &Request) -> Option<String> {
    let headers = req.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("host");
    workspaces().resolve(&RequestParts::new(host, req.uri().path(), &header))
}

/// GitHub's secret scanning partner programme posts leaked tokens here; genuine keys are
/// revoked at once (the receiver checks the signature before reading the body).
async fn secret_scanning(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(receiver) = &app.scanning else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "secret scanning is not configured",
        );
    };
    let ctx = RequestContext::new().actor("github secret scanning");
    let answer = receiver.handle(&headers, &body, &ctx).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}

/// Bearer key, or the session cookie made by automated login (never for /admin).
///
/// Failed verifications are throttled per client address exactly as `KeywardLayer` does on
/// the other routes (the same throttle): a blocked client gets 429 before anything is looked
/// up, so neither a key nor a session id can be guessed here faster than elsewhere.
async fn bearer_or_session(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let ctx = match &app.proxies {
        Some(proxies) => request_context_behind(&req, proxies),
        None => request_context(&req),
    };
    if let Some(retry_after) = ctx.client_addr.and_then(|ip| app.failures.blocked(ip)) {
        return error_response(&AuthError::RateLimited { retry_after }, REALM);
    }
    let workspace = workspace_of(&req);
    let result = if req.headers().contains_key(header::AUTHORIZATION) {
        let headers = req.headers();
        match CredentialSource::Bearer.extract(|n| headers.get_all(n).iter().map(|v| v.as_bytes()))
        {
            Ok(token) => app
                .manager
                .verify(token, &ctx)
                .await
                .map_err(AuthError::from),
            Err(e) => Err(e.into()),
        }
    } else {
        match session_id(req.headers()) {
            Some(id) => from_session(&app, &id).await.and_then(|proof| {
                match app.manager.admits_network(&proof, ctx.client_addr) {
                    true => Ok(proof),
                    false => Err(AuthError::Verify(VerifyError::NetworkNotAllowed)),
                }
            }),
            None => Err(AuthError::Credentials(keyward::http::BearerError::Missing)),
        }
    };
    // A key of another workspace is answered as an unknown key.
    let result = result.and_then(
        |proof| match admits_workspace(&proof, workspace.as_deref()) {
            true => Ok(proof),
            false => Err(AuthError::Verify(VerifyError::Invalid)),
        },
    );
    match result {
        Ok(proof) => {
            req.extensions_mut().insert(proof);
            req.extensions_mut().insert(ctx);
            next.run(req).await
        }
        Err(e) => {
            if let Some(ip) = ctx.client_addr {
                record_failure(&app, ip, &e).await;
            }
            error_response(&e, REALM)
        }
    }
}

/// Charges a failed verification to `ip` when it looks like a guess (an unknown or malformed
/// key, an unknown session), as `KeywardLayer` does.
async fn record_failure(app: &App, ip: IpAddr, e: &AuthError) {
    if matches!(
        e,
        AuthError::Verify(VerifyError::Invalid | VerifyError::Malformed(_))
    ) && let Err(e) = app.failures.record_failure(ip).await
    {
        tracing::warn!(error = %e, "could not count a failed verification");
    }
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (name, value) = c.trim().split_once('=')?;
            (name == "session").then(|| value.to_owned())
        })
}

fn session_hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn sessions(app: &App) -> std::sync::MutexGuard<'_, Sessions> {
    app.sessions.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn from_session(app: &App, id: &str) -> Result<Verified, AuthError> {
    let hash = session_hash(id);
    let now = app.manager.now();
    let proof = {
        let mut sessions = sessions(app);
        match sessions.by_hash.get(&hash) {
            Some(s) if s.expires_at > now => s.proof.clone(),
            Some(_) => {
                sessions.by_hash.remove(&hash);
                return Err(AuthError::Verify(VerifyError::Invalid));
            }
            None => return Err(AuthError::Verify(VerifyError::Invalid)),
        }
    };
    // Every request re-checks the key: a disabled, revoked or expired key (or ancestor)
    // ends its sessions.
    match app.manager.refresh(&proof).await {
        Ok(fresh) => Ok(fresh),
        Err(e) => {
            if !matches!(e, VerifyError::Unavailable(_)) {
                sessions(app).drop_key(&proof.key_id());
            }
            Err(e.into())
        }
    }
}

async fn automated_login(State(app): State<Arc<App>>, key: Verified) -> Response {
    let mut raw = [0u8; 32];
    if getrandom::fill(&mut raw).is_err() {
        return AuthError::Unavailable.into_response();
    }
    let id = Base64UrlUnpadded::encode_string(&raw);
    let now = app.manager.now();
    let limit = now.saturating_add(SESSION_LIFETIME);
    // No longer than the key, nor than any key it was delegated from.
    let expires_at = key.ends_at().map_or(limit, |at| at.min(limit));
    let max_age = (expires_at - now).whole_seconds().max(0);
    sessions(&app).insert(session_hash(&id), key, expires_at, now);
    let cookie =
        format!("session={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}");
    let body = json!({ "ok": true, "expires_at": expires_at.unix_timestamp() });
    (StatusCode::OK, [(header::SET_COOKIE, cookie)], Json(body)).into_response()
}

fn error(status: StatusCode, code: &str, message: impl ToString) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.to_string() })),
    )
        .into_response()
}

fn invalid_request(message: impl ToString) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "key store unavailable",
    )
}

/// A store failure: 503 when it may pass, 500 when the store cannot do what this service is
/// configured for (no retry helps; logged for the operator).
fn store_failure(e: &StoreError) -> Response {
    if let StoreError::Unsupported { .. } = e {
        tracing::error!(error = %e, "the key store cannot do what the service is configured for");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the key store does not support this service's configuration",
        );
    }
    unavailable()
}

fn lifecycle_error(e: LifecycleError) -> Response {
    match e {
        LifecycleError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e),
        LifecycleError::Store(ref e) => store_failure(e),
        LifecycleError::LimitReached { .. } | LifecycleError::TenantLimitReached { .. } => {
            error(StatusCode::CONFLICT, "limit_reached", e)
        }
        // The calling key stopped verifying since this request began: as for a dead key.
        LifecycleError::Actor(why) => error_response(&AuthError::Verify(why), REALM),
        LifecycleError::NegativeGrace => invalid_request(e),
        _ => error(StatusCode::CONFLICT, "conflict", e),
    }
}

fn issue_error(e: IssueError) -> Response {
    match e {
        IssueError::Widening(what) => error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("cannot grant more than the caller holds: {what}"),
        ),
        IssueError::Store(ref e) => store_failure(e),
        IssueError::LimitReached { limit } => error(
            StatusCode::CONFLICT,
            "limit_reached",
            format!("owner has {limit} live keys"),
        ),
        IssueError::TenantLimitReached { limit } => error(
            StatusCode::CONFLICT,
            "limit_reached",
            format!("company has {limit} live keys"),
        ),
        IssueError::Actor(why) => error_response(&AuthError::Verify(why), REALM),
        e => invalid_request(e),
    }
}

fn view(r: &KeyRecord) -> Value {
    json!({
        "id": r.id, "preview": r.preview(), "name": r.name, "owner": r.owner, "tenant": r.tenant,
        "parent": r.parent, "legacy": r.hash.is_foreign(),
        "scopes": r.scopes, "roles": r.roles, "restrictions": r.restrictions, "status": r.status,
        "allowed_ips": r.allowed_networks,
        "created_at": r.created_at.unix_timestamp(),
        "expires_at": r.expires_at.map(OffsetDateTime::unix_timestamp),
        "last_used_at": r.last_used_at.map(OffsetDateTime::unix_timestamp),
    })
}

/// `expires_in_days` as an expiry: a positive number of days whose end the clock can
/// represent (anything else is refused, never an overflow).
fn expiry_in_days(now: OffsetDateTime, days: i64) -> Option<Expiry> {
    let lifetime = Duration::seconds(days.checked_mul(86_400).filter(|_| days > 0)?);
    now.checked_add(lifetime)?;
    Some(Expiry::After(lifetime))
}

/// `expires_in_months` as an expiry: 1, 3 or 6 calendar months.
fn expiry_in_months(months: i64) -> Option<Expiry> {
    let preset = match months {
        1 => ExpiryPreset::Months1,
        3 => ExpiryPreset::Months3,
        6 => ExpiryPreset::Months6,
        _ => return None,
    };
    Some(Expiry::Preset(preset))
}

/// The options of an issuing request body besides name and scopes.
#[derive(Deserialize, Default)]
struct Options {
    expires_in_days: Option<i64>,
    expires_in_months: Option<i64>,
    restrictions: Option<Vec<String>>,
    allowed_ips: Option<Vec<String>>,
}

/// Applies the options of a request body (without one, the key expires after the default
/// three calendar months, or with the caller); `Err` is the message of a 400.
fn with_options(
    app: &App,
    mut request: IssueRequest,
    options: Options,
) -> Result<IssueRequest, String> {
    match (options.expires_in_days, options.expires_in_months) {
        (Some(_), Some(_)) => {
            return Err("give expires_in_days or expires_in_months, not both".to_owned());
        }
        (Some(days), None) => {
            let expiry = expiry_in_days(app.manager.now(), days).ok_or_else(|| {
                "expires_in_days must be a positive number of days in range".to_owned()
            })?;
            request = request.expiry(expiry);
        }
        (None, Some(months)) => {
            let expiry = expiry_in_months(months)
                .ok_or_else(|| "expires_in_months must be 1, 3 or 6".to_owned())?;
            request = request.expiry(expiry);
        }
        (None, None) => {}
    }
    if let Some(list) = options.restrictions {
        request = request.restrictions(Restrictions::only(list).map_err(|e| e.to_string())?);
    }
    if let Some(list) = options.allowed_ips {
        let networks = Networks::only(list).map_err(|e| format!("allowed_ips: {e}"))?;
        request = request.allowed_networks(networks);
    }
    Ok(request)
}

fn actor_context(caller: &Verified) -> RequestContext {
    RequestContext::new().actor(caller.key_id().to_string())
}

fn created(issued: &Issued) -> Value {
    json!({
        "id": issued.record.id,
        "key": issued.key.expose_secret(),
        "preview": issued.record.preview(),
        "expires_at": issued.record.expires_at.map(OffsetDateTime::unix_timestamp),
    })
}

#[derive(Deserialize)]
struct IssueBody {
    name: String,
    owner: String,
    scopes: ScopeSet,
    #[serde(flatten)]
    options: Options,
    /// A tenant-bound caller may only name its own; none means the caller's.
    tenant: Option<String>,
}

/// Administrative issuance, as the calling key: never wider than it, never outliving it,
/// within its tenant.
async fn admin_issue(
    State(app): State<Arc<App>>,
    caller: Verified,
    body: Result<Json<IssueBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return invalid_request(e.body_text()),
    };
    let mut request = IssueRequest::new(body.name, body.owner).scopes(body.scopes);
    if let Some(tenant) = body.tenant {
        request = request.tenant(tenant);
    }
    let request = match with_options(&app, request, body.options) {
        Ok(r) => r,
        Err(message) => return invalid_request(message),
    };
    let ctx = actor_context(&caller);
    match app.manager.acting_as(&caller).issue(request, &ctx).await {
        Ok(issued) => (StatusCode::CREATED, Json(created(&issued))).into_response(),
        Err(e) => issue_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateBody {
    name: String,
    scopes: ScopeSet,
    restrictions: Option<Vec<String>>,
    expires_in_days: Option<i64>,
    expires_in_months: Option<i64>,
    allowed_ips: Option<Vec<String>>,
}

/// Delegation: a child of the calling key, for life (refused once any ancestor is revoked,
/// disabled, expired or deleted), with the caller's owner and tenant, never wider.
async fn delegate(
    State(app): State<Arc<App>>,
    caller: Verified,
    body: Result<Json<DelegateBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return invalid_request(e.body_text()),
    };
    let acting = app.manager.acting_as(&caller);
    let request = acting.child_request(body.name).scopes(body.scopes);
    let options = Options {
        expires_in_days: body.expires_in_days,
        expires_in_months: body.expires_in_months,
        restrictions: body.restrictions,
        allowed_ips: body.allowed_ips,
    };
    let request = match with_options(&app, request, options) {
        Ok(r) => r,
        Err(message) => return invalid_request(message),
    };
    match acting.delegate(request, &actor_context(&caller)).await {
        Ok(issued) => {
            let mut answer = created(&issued);
            answer["parent"] = json!(issued.record.parent);
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err(e) => issue_error(e),
    }
}

#[derive(Deserialize)]
struct OwnerQuery {
    owner: Option<String>,
}

/// The keys within the caller's reach (a tenant-bound caller's tenant only).
async fn admin_list(
    State(app): State<Arc<App>>,
    caller: Verified,
    Query(q): Query<OwnerQuery>,
) -> Response {
    let filter = q.owner.map_or(ListFilter::All, ListFilter::Owner);
    match app
        .manager
        .acting_as(&caller)
        .list(&filter, Page::first(Page::MAX_LIMIT))
        .await
    {
        Ok(records) => Json(records.iter().map(view).collect::<Vec<_>>()).into_response(),
        Err(e) => lifecycle_error(e),
    }
}

fn not_found(e: keyward::key::KeyIdError) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", e)
}

/// The record's view, after dropping the sessions of a key that stopped working.
fn changed(app: &App, record: &KeyRecord) -> Response {
    if record.status != KeyStatus::Active {
        sessions(app).drop_key(&record.id);
    }
    Json(view(record)).into_response()
}

async fn admin_disable(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let id = match id.parse::<KeyId>() {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    let ctx = actor_context(&caller);
    match app.manager.acting_as(&caller).disable(&id, &ctx).await {
        Ok(record) => {
            close_sessions(&app, &record.id).await;
            changed(&app, &record)
        }
        Err(e) => lifecycle_error(e),
    }
}

/// Closes the MCP sessions of a key that stopped working (its open streams end now; the
/// sessions of keys delegated from it close at the binding's next check).
async fn close_sessions(app: &App, id: &KeyId) {
    if let Some(binding) = app.mcp_sessions.get() {
        binding.close_key(id).await;
    }
}

async fn admin_enable(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let id = match id.parse::<KeyId>() {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    let ctx = actor_context(&caller);
    match app.manager.acting_as(&caller).enable(&id, &ctx).await {
        Ok(record) => Json(view(&record)).into_response(),
        Err(e) => lifecycle_error(e),
    }
}

async fn admin_revoke(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let id = match id.parse::<KeyId>() {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    let ctx = actor_context(&caller);
    match app
        .manager
        .acting_as(&caller)
        .revoke(&id, Some("admin"), &ctx)
        .await
    {
        Ok(record) => {
            close_sessions(&app, &record.id).await;
            changed(&app, &record)
        }
        Err(e) => lifecycle_error(e),
    }
}

#[derive(Deserialize, Default)]
struct RotateBody {
    #[serde(default)]
    grace_seconds: i64,
}

async fn admin_rotate(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
    body: Option<Json<RotateBody>>,
) -> Response {
    let id = match id.parse::<KeyId>() {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    let ctx = actor_context(&caller);
    let grace = Duration::seconds(body.map(|Json(b)| b.grace_seconds).unwrap_or_default());
    match app
        .manager
        .acting_as(&caller)
        .rotate(&id, grace, &ctx)
        .await
    {
        Ok(issued) => {
            if grace.is_zero() {
                // A rotation without overlap ends the old key at once.
                sessions(&app).drop_key(&id);
            }
            Json(json!({ "id": issued.record.id, "key": issued.key.expose_secret() }))
                .into_response()
        }
        Err(e) => lifecycle_error(e),
    }
}

async fn admin_delete(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let id = match id.parse::<KeyId>() {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    let ctx = actor_context(&caller);
    match app.manager.acting_as(&caller).delete(&id, &ctx).await {
        Ok(()) => {
            sessions(&app).drop_key(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => lifecycle_error(e),
    }
}

/// The scope catalog: each scope with its description and everything it includes, and
/// each role with its scopes (for permission pickers).
async fn admin_scopes(State(app): State<Arc<App>>) -> Response {
    Json(app.scopes.clone()).into_response()
}

#[derive(Deserialize)]
struct AuditParams {
    key: String,
}

/// A key's audit events from the database (they survive a restart), oldest first; a key
/// outside the caller's reach is answered as an unknown id.
async fn admin_audit(
    State(app): State<Arc<App>>,
    caller: Verified,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return invalid_request(e.body_text()),
    };
    let id = match params.key.parse::<KeyId>() {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    // Reach first: nothing about a key outside it, not even whether it has events.
    if let Err(e) = app.manager.acting_as(&caller).get(&id).await {
        return lifecycle_error(e);
    }
    let mut events = Vec::new();
    let mut page = Some(AuditQuery::new().key(id).limit(AuditQuery::MAX_LIMIT));
    while let Some(query) = page {
        match app.journal.query(app.manager.store(), &query).await {
            Ok(records) => {
                page = query.next(&records);
                events.extend(records);
            }
            Err(_) => return unavailable(),
        }
    }
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "kind": e.kind,
                "at": e.at.unix_timestamp(),
                "time": e.at.format(&time::format_description::well_known::Rfc3339).ok(),
                "actor": e.actor,
                "count": e.count,
                "detail": e.detail,
                "client_addr": e.client_addr,
            })
        })
        .collect();
    Json(events).into_response()
}

/// A field that may be absent (keep), `null` (clear) or a value (set).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    name: Option<String>,
    scopes: Option<ScopeSet>,
    /// `null`: unrestricted (within the caller); a list: only those resources.
    #[serde(default, deserialize_with = "present")]
    restrictions: Option<Option<Vec<String>>>,
    /// `null`: any network (within the caller); a list: only those networks.
    #[serde(default, deserialize_with = "present")]
    allowed_ips: Option<Option<Vec<String>>>,
}

impl EditBody {
    fn into_edit(self) -> Result<KeyEdit, String> {
        let mut edit = KeyEdit::new();
        if let Some(name) = self.name {
            edit = edit.name(name);
        }
        if let Some(scopes) = self.scopes {
            edit = edit.scopes(scopes);
        }
        match self.restrictions {
            Some(Some(list)) => {
                edit = edit.restrictions(Restrictions::only(list).map_err(|e| e.to_string())?);
            }
            Some(None) => edit = edit.restrictions(Restrictions::unrestricted()),
            None => {}
        }
        match self.allowed_ips {
            Some(Some(list)) => {
                let networks = Networks::only(list).map_err(|e| format!("allowed_ips: {e}"))?;
                edit = edit.allowed_networks(networks);
            }
            Some(None) => edit = edit.allowed_networks(Networks::any()),
            None => {}
        }
        Ok(edit)
    }
}

fn edit_error(e: EditError) -> Response {
    match e {
        EditError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e),
        EditError::Widening(what) => error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("cannot grant more than the caller holds: {what}"),
        ),
        EditError::Store(_) => unavailable(),
        EditError::Actor(why) => error_response(&AuthError::Verify(why), REALM),
        EditError::NotLive(_) | EditError::Contended(_) => {
            error(StatusCode::CONFLICT, "conflict", e)
        }
        e => invalid_request(e),
    }
}

/// Edits a live key within the caller's reach: name, scopes, restrictions, allowed IPs.
/// Effective on the key's next request; audited with the fields that changed.
async fn admin_edit(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
    body: Result<Json<EditBody>, JsonRejection>,
) -> Response {
    let id = match id.parse::<KeyId>() {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    let edit = match body
        .map_err(|e| e.body_text())
        .and_then(|Json(b)| b.into_edit())
    {
        Ok(edit) => edit,
        Err(message) => return invalid_request(message),
    };
    let ctx = actor_context(&caller);
    match app.manager.acting_as(&caller).edit(&id, edit, &ctx).await {
        // Sessions re-read the key on every request, so they see the edit too.
        Ok(record) => Json(view(&record)).into_response(),
        Err(e) => edit_error(e),
    }
}

fn tickets(app: &App) -> std::sync::MutexGuard<'_, Vec<Ticket>> {
    app.tickets.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn list_tickets(
    State(app): State<Arc<App>>,
    key: Verified,
) -> Result<Json<Vec<Ticket>>, AuthError> {
    key.authorize(&scope("read"), None)?;
    Ok(Json(visible_tickets(&app, &key)))
}

/// The tickets `key` may see (`GET /tickets` and the `list_tickets` tool): a restricted key
/// sees only the rows of its companies or projects.
fn visible_tickets(app: &App, key: &Verified) -> Vec<Ticket> {
    tickets(app)
        .iter()
        .filter(|t| t.resource().is_some_and(|r| key.restrictions().allows(&r)))
        .cloned()
        .collect()
}

async fn project_tickets(
    State(app): State<Arc<App>>,
    key: Verified,
    Path((c, p)): Path<(String, String)>,
) -> Response {
    let Ok(resource) = format!("company:{c}/project:{p}").parse::<Resource>() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such project");
    };
    if let Err(denied) = key.authorize(&scope("read"), Some(&resource)) {
        return error_response(&denied.into(), REALM);
    }
    let list: Vec<Ticket> = tickets(&app)
        .iter()
        .filter(|t| t.company == c && t.project == p)
        .cloned()
        .collect();
    Json(list).into_response()
}

/// The scope check every write route makes before reading its body: a key without `needs`
/// at all gets 403 whatever it sent.
fn lacks(key: &Verified, needs: &'static str) -> Option<Response> {
    key.authorize(&scope(needs), None)
        .err()
        .map(|denied| error_response(&denied.into(), REALM))
}

#[derive(Deserialize)]
struct NewTicket {
    title: String,
    company: String,
    project: String,
}

async fn create_ticket(
    State(app): State<Arc<App>>,
    key: Verified,
    verified_in: Option<axum::Extension<RequestContext>>,
    body: Result<Json<NewTicket>, JsonRejection>,
) -> Response {
    if let Some(denied) = lacks(&key, "tickets:write") {
        return denied;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(rejection) => return rejection.into_response(),
    };
    // The context the key was verified in (the client address through any trusted
    // proxies); a session-cookie request has the one its middleware made.
    let ctx = match verified_in {
        Some(axum::Extension(ctx)) => ctx,
        None => RequestContext::new().channel(Channel::HTTP),
    };
    match add_ticket(&app, &key, body, &ctx) {
        Ok(ticket) => (StatusCode::CREATED, Json(ticket)).into_response(),
        Err(NotAdded::Invalid(message)) => invalid_request(message),
        Err(NotAdded::Denied(denied)) => error_response(&denied.into(), REALM),
    }
}

/// Why a ticket was not created.
enum NotAdded {
    Invalid(&'static str),
    Denied(keyward::scope::Denied),
}

/// Creates a ticket as `key` (which must hold `tickets:write` on its project), naming the key
/// and `ctx`'s channel in `created_by` and in an audit event (`ticket.create`).
fn add_ticket(
    app: &App,
    key: &Verified,
    body: NewTicket,
    ctx: &RequestContext,
) -> Result<Ticket, NotAdded> {
    let Ok(resource) =
        format!("company:{}/project:{}", body.company, body.project).parse::<Resource>()
    else {
        return Err(NotAdded::Invalid("company and project must be ids"));
    };
    key.authorize(&scope("tickets:write"), Some(&resource))
        .map_err(NotAdded::Denied)?;
    let ticket = {
        let mut all = tickets(app);
        let ticket = Ticket {
            id: all.len() as u64 + 1,
            company: body.company,
            project: body.project,
            title: body.title,
            comments: Vec::new(),
            assignee: None,
            created_by: Some(CreatedBy {
                key_id: key.key_id(),
                channel: ctx.channel.clone().unwrap_or(Channel::HTTP),
            }),
        };
        all.push(ticket.clone());
        ticket
    };
    let target = format!("ticket:{}", ticket.id);
    app.manager
        .record_action(key, "ticket.create", Some(&target), ctx);
    Ok(ticket)
}

/// Checks the scope, then the path and body (their rejections as axum gives them), then
/// changes the ticket if the key may touch its resource.
fn with_ticket<T>(
    app: &App,
    key: &Verified,
    path: Result<Path<u64>, PathRejection>,
    body: Result<Json<T>, JsonRejection>,
    needs: &'static str,
    change: impl FnOnce(&mut Ticket, T),
) -> Response {
    if let Some(denied) = lacks(key, needs) {
        return denied;
    }
    let Path(id) = match path {
        Ok(p) => p,
        Err(rejection) => return rejection.into_response(),
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(rejection) => return rejection.into_response(),
    };
    let mut all = tickets(app);
    let Some(ticket) = all.iter_mut().find(|t| t.id == id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such ticket");
    };
    if let Err(denied) = key.authorize(&scope(needs), ticket.resource().as_ref()) {
        return error_response(&denied.into(), REALM);
    }
    change(ticket, body);
    (StatusCode::OK, Json(ticket.clone())).into_response()
}

#[derive(Deserialize)]
struct CommentBody {
    body: String,
}

async fn comment(
    State(app): State<Arc<App>>,
    key: Verified,
    path: Result<Path<u64>, PathRejection>,
    body: Result<Json<CommentBody>, JsonRejection>,
) -> Response {
    with_ticket(&app, &key, path, body, "comments", |t, b| {
        t.comments.push(b.body);
    })
}

#[derive(Deserialize)]
struct AssignBody {
    assignee: String,
}

async fn assign(
    State(app): State<Arc<App>>,
    key: Verified,
    path: Result<Path<u64>, PathRejection>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Response {
    with_ticket(&app, &key, path, body, "tickets:assign", |t, b| {
        t.assignee = Some(b.assignee);
    })
}

/// Tools that write: a `tools/call` of one of these spends the `writes` limit, every other
/// MCP request `reads`.
const WRITING_TOOLS: [&str; 1] = ["create_ticket"];

/// The largest MCP request body read (by the rate-limit class and by rmcp alike).
const MCP_MAX_BODY: usize = 1 << 20;

/// `/mcp`: an MCP server (Streamable HTTP) whose tools follow the key's scopes. Every HTTP
/// request is verified by the Bearer layer (channel `mcp` in audit events), charged to the
/// key's `reads` or `writes` budget, and its session must be the key's own.
fn mcp_router(
    app: &Arc<App>,
    bearer: KeywardLayer<Store>,
    limits: RateLimit<MemoryLimiter>,
) -> Router<Arc<App>> {
    let scopes = Arc::new(
        ToolScopes::new()
            .tool("list_tickets", scope("read"))
            .tool("create_ticket", scope("tickets:write")),
    );
    let sessions = Arc::new(LocalSessionManager::default());
    let server = Arc::clone(app);
    // Every request must carry a key, which a page cannot make a browser send, so the
    // DNS-rebinding check (loopback `Host` only) would only get in the way of real hosts.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(MCP_MAX_BODY);
    let service = StreamableHttpService::new(
        move || {
            Ok(TicketTools {
                app: Arc::clone(&server),
                scopes: Arc::clone(&scopes),
            })
        },
        Arc::clone(&sessions),
        config,
    );
    let binding = SessionBinding::new(Arc::clone(&app.manager), sessions);
    // One `/mcp` per service: a second mount would keep the first binding.
    let _ = app.mcp_sessions.set(binding.clone());
    Router::new()
        .route_service("/mcp", binding.bind(service))
        .route_layer(RequireScope::new(scope("read")))
        .layer(limits)
        .layer(middleware::from_fn(mcp_limit_class))
        .layer(bearer)
}

/// Marks an MCP request as a write when it calls a writing tool (a batch, when any of its
/// messages does), as a read otherwise, for the rate limits.
async fn mcp_limit_class(req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(with_class(req, "reads")).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MCP_MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("MCP requests are limited to {MCP_MAX_BODY} bytes"),
        );
    };
    let class = if calls_writing_tool(&bytes) {
        "writes"
    } else {
        "reads"
    };
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    next.run(with_class(req, class)).await
}

fn with_class(mut req: Request, class: &'static str) -> Request {
    req.extensions_mut().insert(LimitClass(class));
    req
}

/// Whether a JSON-RPC message (or batch) calls one of [`WRITING_TOOLS`].
fn calls_writing_tool(body: &[u8]) -> bool {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let writes = |m: &Value| {
        m.get("method").and_then(Value::as_str) == Some("tools/call")
            && m.pointer("/params/name")
                .and_then(Value::as_str)
                .is_some_and(|name| WRITING_TOOLS.contains(&name))
    };
    match &message {
        Value::Array(batch) => batch.iter().any(writes),
        single => writes(single),
    }
}

/// The MCP tools of the ticket service.
#[derive(Clone)]
struct TicketTools {
    app: Arc<App>,
    scopes: Arc<ToolScopes>,
}

fn schema(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn tools() -> [Tool; 2] {
    [
        Tool::new(
            "list_tickets",
            "List the tickets this key may read",
            schema(json!({ "type": "object", "properties": {} })),
        ),
        Tool::new(
            "create_ticket",
            "Create a ticket in a project of a company",
            schema(json!({
                "type": "object",
                "properties": {
                    "title": { "type": "string", "description": "What is wrong" },
                    "company": { "type": "string", "description": "The company's id, such as 42" },
                    "project": { "type": "string", "description": "The project's id, such as 7" }
                },
                "required": ["title", "company", "project"]
            })),
        ),
    ]
}

/// A tool's answer: its JSON as text content and as structured content.
fn tool_result(value: Value) -> CallToolResponse {
    CallToolResult::structured(value).into()
}

impl ServerHandler for TicketTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("toado", env!("CARGO_PKG_VERSION")))
            .with_instructions("Toado's tickets; the tools follow the scopes of your API key.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: McpContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.scopes.list(&ctx, tools())
    }

    async fn call_tool(
        &self,
        call: CallToolRequestParams,
        ctx: McpContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let key = self.scopes.check(&ctx, &call.name)?;
        match call.name.as_ref() {
            "list_tickets" => Ok(tool_result(
                json!({ "tickets": visible_tickets(&self.app, key) }),
            )),
            "create_ticket" => {
                let arguments = Value::Object(call.arguments.unwrap_or_default());
                let body: NewTicket = serde_json::from_value(arguments).map_err(|e| {
                    ErrorData::invalid_params(format!("create_ticket arguments: {e}"), None)
                })?;
                let ctx = keyward::mcp::audit_context(&ctx);
                match add_ticket(&self.app, key, body, &ctx) {
                    Ok(ticket) => Ok(tool_result(json!(ticket))),
                    Err(NotAdded::Invalid(message)) => {
                        Err(ErrorData::invalid_params(message, None))
                    }
                    Err(NotAdded::Denied(denied)) => {
                        Err(keyward::mcp::error(&AuthError::Denied(denied)))
                    }
                }
            }
            _ => Err(ErrorData::invalid_params("tool not found", None)),
        }
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }
}
