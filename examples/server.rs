//! A Toado-like ticket service protected by keyward: Bearer keys with implied scopes,
//! resource restrictions, an admin API, a session cookie for headless tests, and an MCP
//! endpoint.
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
//! a client address may make a minute, on every route, before it gets 429).
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
use keyward::axum::{KeywardLayer, RateLimit, RequireScope, error_response, request_context};
use keyward::leak::scanning::{PublicKeys, ScanningOrigin, ScanningReceiver};
use keyward::limit::{FailureThrottle, LimitPolicy, MemoryLimiter, Rate};
use keyward::{
    Hasher, IssueRequest, Issued, KeyFormat, KeyId, KeyManager, KeyRecord, Pepper, RequestContext,
    ScopeCatalog, ScopeSet, Verified,
    http::{AuthError, CredentialSource},
    manager::{IssueError, LifecycleError, VerifyError},
    policy::{Expiry, IssuancePolicy},
    record::KeyStatus,
    scope::{Resource, Restrictions},
    store::{AnyStore, ListFilter, Page},
};
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

struct App {
    manager: Arc<KeyManager<AnyStore>>,
    sessions: Mutex<Sessions>,
    tickets: Mutex<Vec<Ticket>>,
    /// Toado's defaults: 600 reads and 60 writes a minute per key, and
    /// `KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE` failed verifications a minute per client.
    limiter: Arc<MemoryLimiter>,
    /// Failed verifications per client address, shared by every route.
    failures: Arc<FailureThrottle<Arc<MemoryLimiter>>>,
    /// GitHub's secret-scanning public keys, from `KEYWARD_SCANNING_KEYS_FILE`.
    scanning: Option<ScanningReceiver<AnyStore, PublicKeys>>,
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
        .implies("comments", "read")
        .implies("tickets:write", "comments")
        .implies("tickets:assign", "read")
        .build()
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pepper = match std::env::var("KEYWARD_PEPPER") {
        Ok(text) => Pepper::from_text(&text)?,
        Err(_) => Pepper::random("ephemeral")?,
    };
    let url = std::env::var("KEYWARD_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://keyward-example.db?mode=rwc".to_owned());
    let store = AnyStore::open(&url).await?;
    let manager = KeyManager::new(store, KeyFormat::new(["tak"])?, Hasher::fast(pepper))
        .with_catalog(catalog()?)
        .with_policy(IssuancePolicy::default().allow_never_expiring(true))
        .with_audit(keyward::audit::TracingAudit);
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
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
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
    })
    .collect()
}

fn scope(s: &'static str) -> keyward::Scope {
    s.parse()
        .unwrap_or_else(|e| panic!("static scope {s}: {e}"))
}

fn router(app: Arc<App>) -> Router {
    let bearer = KeywardLayer::new(Arc::clone(&app.manager))
        .realm(REALM)
        .throttle_failures(Arc::clone(&app.failures));
    // Every GET is a read, every POST outside /admin a write (charged after verification).
    let limits = RateLimit::new(Arc::clone(&app.limiter));
    let admin = Router::new()
        .route("/admin/keys", post(admin_issue).get(admin_list))
        .route("/admin/keys/{id}/disable", post(admin_disable))
        .route("/admin/keys/{id}/enable", post(admin_enable))
        .route("/admin/keys/{id}/revoke", post(admin_revoke))
        .route("/admin/keys/{id}/rotate", post(admin_rotate))
        .route("/admin/keys/{id}", axum::routing::delete(admin_delete))
        .route_layer(RequireScope::new(scope("keys:manage")))
        .layer(bearer.clone());
    let bearer_only = Router::new()
        .route("/api/auth/automated-login", post(automated_login))
        .route(
            "/api/keys/delegate",
            post(delegate).route_layer(RequireScope::new(scope("keys:delegate"))),
        )
        .route(
            "/mcp",
            post(mcp).route_layer(RequireScope::new(scope("read"))),
        )
        .layer(limits.clone())
        .layer(bearer);
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
        .merge(api)
        .merge(scanning)
        .with_state(app)
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
    let ctx = request_context(&req);
    if let Some(retry_after) = ctx.client_addr.and_then(|ip| app.failures.blocked(ip)) {
        return error_response(&AuthError::RateLimited { retry_after }, REALM);
    }
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
            Some(id) => from_session(&app, &id).await,
            None => Err(AuthError::Credentials(keyward::http::BearerError::Missing)),
        }
    };
    match result {
        Ok(proof) => {
            req.extensions_mut().insert(proof);
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
    ) {
        if let Err(e) = app.failures.record_failure(ip).await {
            tracing::warn!(error = %e, "could not count a failed verification");
        }
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

fn lifecycle_error(e: LifecycleError) -> Response {
    match e {
        LifecycleError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e),
        LifecycleError::Store(_) => unavailable(),
        LifecycleError::LimitReached { .. } => error(StatusCode::CONFLICT, "limit_reached", e),
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
        IssueError::Store(_) => unavailable(),
        IssueError::LimitReached { limit } => error(
            StatusCode::CONFLICT,
            "limit_reached",
            format!("owner has {limit} live keys"),
        ),
        IssueError::Actor(why) => error_response(&AuthError::Verify(why), REALM),
        e => invalid_request(e),
    }
}

fn view(r: &KeyRecord) -> Value {
    json!({
        "id": r.id, "preview": r.preview(), "name": r.name, "owner": r.owner, "tenant": r.tenant,
        "parent": r.parent,
        "scopes": r.scopes, "roles": r.roles, "restrictions": r.restrictions, "status": r.status,
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

/// Applies the optional `expires_in_days` and `restrictions` of a request body; `Err` is
/// the message of a 400.
fn with_options(
    app: &App,
    mut request: IssueRequest,
    expires_in_days: Option<i64>,
    restrictions: Option<Vec<String>>,
) -> Result<IssueRequest, String> {
    if let Some(days) = expires_in_days {
        let expiry = expiry_in_days(app.manager.now(), days).ok_or_else(|| {
            "expires_in_days must be a positive number of days in range".to_owned()
        })?;
        request = request.expiry(expiry);
    }
    if let Some(list) = restrictions {
        request = request.restrictions(Restrictions::only(list).map_err(|e| e.to_string())?);
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
    expires_in_days: Option<i64>,
    restrictions: Option<Vec<String>>,
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
    let request = match with_options(&app, request, body.expires_in_days, body.restrictions) {
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
    let request = match with_options(&app, request, body.expires_in_days, body.restrictions) {
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
        Ok(record) => changed(&app, &record),
        Err(e) => lifecycle_error(e),
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
        Ok(record) => changed(&app, &record),
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

fn tickets(app: &App) -> std::sync::MutexGuard<'_, Vec<Ticket>> {
    app.tickets.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn list_tickets(
    State(app): State<Arc<App>>,
    key: Verified,
) -> Result<Json<Vec<Ticket>>, AuthError> {
    key.authorize(&scope("read"), None)?;
    let all = tickets(&app).clone();
    // A restricted key sees only the rows of its companies or projects.
    let visible = all
        .into_iter()
        .filter(|t| t.resource().is_some_and(|r| key.restrictions().allows(&r)))
        .collect();
    Ok(Json(visible))
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
    body: Result<Json<NewTicket>, JsonRejection>,
) -> Response {
    if let Some(denied) = lacks(&key, "tickets:write") {
        return denied;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(resource) =
        format!("company:{}/project:{}", body.company, body.project).parse::<Resource>()
    else {
        return invalid_request("company and project must be ids");
    };
    if let Err(denied) = key.authorize(&scope("tickets:write"), Some(&resource)) {
        return error_response(&denied.into(), REALM);
    }
    let mut all = tickets(&app);
    let ticket = Ticket {
        id: all.len() as u64 + 1,
        company: body.company,
        project: body.project,
        title: body.title,
        comments: Vec::new(),
        assignee: None,
    };
    all.push(ticket.clone());
    (StatusCode::CREATED, Json(ticket)).into_response()
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

/// A minimal MCP server: JSON-RPC 2.0 `tools/list`, authenticated by the Bearer key that an
/// MCP client sends from its `headers` configuration.
async fn mcp(Json(call): Json<Value>) -> Json<Value> {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    if call.get("jsonrpc") != Some(&json!("2.0")) {
        return Json(
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32600, "message": "invalid request" } }),
        );
    }
    match call.get("method").and_then(Value::as_str) {
        Some("tools/list") => Json(json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": { "tools": [{
                "name": "list_tickets",
                "description": "List the tickets this key may read",
                "inputSchema": { "type": "object", "properties": {} }
            }]}
        })),
        _ => Json(
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "method not found" } }),
        ),
    }
}
