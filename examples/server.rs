//! A Toado-like ticket service protected by keyward: Bearer keys with implied scopes,
//! resource restrictions, an admin API, a session cookie for headless tests, and an MCP
//! endpoint.
//!
//! ```text
//! KEYWARD_ADMIN_KEY_FILE=/tmp/admin.key cargo run --example server --features axum,rate-limit,secret-scanning,sqlite
//! curl -H "Authorization: Bearer $(cat /tmp/admin.key)" localhost:3000/tickets
//! ```
//!
//! Environment: `KEYWARD_DATABASE_URL` (default `sqlite://keyward-example.db?mode=rwc`; a
//! `postgres://` URL with the `postgres` feature), `KEYWARD_SCANNING_KEYS_FILE` (GitHub's secret-scanning public keys as JSON,
//! `{"public_keys": [...]}`: mounts `POST /secret-scanning/github`), `KEYWARD_ADDR` (default `127.0.0.1:3000`), `KEYWARD_ADMIN_KEY_FILE` (issue a
//! management key with scope `*` at start and write it there, mode 0600, before listening),
//! `KEYWARD_PEPPER` (`[id:]base64`; a random one is used when absent, so keys do not survive
//! a restart).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64ct::{Base64UrlUnpadded, Encoding};
use keyward::axum::{KeywardLayer, RateLimit, RequireScope, error_response, request_context};
use keyward::scanning::{PublicKeys, ScanningOrigin, ScanningReceiver};
use keyward::{
    AuthError, Consumed, CredentialSource, Expiry, Hasher, IssuancePolicy, IssueError,
    IssueRequest, KeyFormat, KeyId, KeyManager, KeyRecord, KeyStore, LifecycleError, ListFilter,
    Page, Pepper, RequestContext, Resource, Restrictions, ScopeCatalog, ScopeSet, SqliteStore,
    StoreError, Verified, VerifyError,
};
use keyward::{FailureThrottle, LimitPolicy, MemoryLimiter};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// The example's store: SQLite by default, PostgreSQL when `KEYWARD_DATABASE_URL` is a
/// `postgres://` URL (feature `postgres`).
#[derive(Clone)]
enum Store {
    Sqlite(SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(keyward::PostgresStore),
}

impl Store {
    async fn open(url: &str) -> Result<Self, Box<dyn std::error::Error>> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let store = keyward::PostgresStore::connect(url).await?;
                store.migrate().await?;
                return Ok(Self::Postgres(store));
            }
            #[cfg(not(feature = "postgres"))]
            return Err("a postgres:// KEYWARD_DATABASE_URL needs --features postgres".into());
        }
        let store = SqliteStore::connect(url).await?;
        store.migrate().await?;
        Ok(Self::Sqlite(store))
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call.await,
            #[cfg(feature = "postgres")]
            Store::Postgres($s) => $call.await,
        }
    };
}

impl KeyStore for Store {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert(record))
    }
    async fn insert_capped(
        &self,
        record: KeyRecord,
        max: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_capped(record, max, now))
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        dispatch!(self, s => s.get(id))
    }
    async fn update(&self, record: KeyRecord, expected: u64) -> Result<(), StoreError> {
        dispatch!(self, s => s.update(record, expected))
    }
    async fn rotate(
        &self,
        old: KeyRecord,
        expected: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.rotate(old, expected, new))
    }
    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        dispatch!(self, s => s.list(filter, page))
    }
    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        dispatch!(self, s => s.consume(id, cost))
    }
    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        dispatch!(self, s => s.touch(id, at))
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(id))
    }
}
const REALM: &str = "toado";

struct App {
    manager: Arc<KeyManager<Store>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    tickets: Mutex<Vec<Ticket>>,
    /// Toado's defaults: 600 reads and 60 writes a minute per key, 10 failed
    /// verifications a minute per client.
    limiter: Arc<MemoryLimiter>,
    /// GitHub's secret-scanning public keys, from `KEYWARD_SCANNING_KEYS_FILE`.
    scanning: Option<ScanningReceiver<Store, PublicKeys>>,
}

struct Session {
    proof: Verified,
    expires_at: OffsetDateTime,
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

fn catalog() -> Result<ScopeCatalog, keyward::CatalogError> {
    ScopeCatalog::builder()
        .scopes([
            "read",
            "comments",
            "tickets:write",
            "tickets:assign",
            "keys:manage",
        ])
        .implies("comments", "read")
        .implies("tickets:write", "comments")
        .implies("tickets:assign", "read")
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pepper = match std::env::var("KEYWARD_PEPPER") {
        Ok(text) => Pepper::from_text(&text)?,
        Err(_) => Pepper::random("ephemeral")?,
    };
    let url = std::env::var("KEYWARD_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://keyward-example.db?mode=rwc".to_owned());
    let store = Store::open(&url).await?;
    let manager = KeyManager::new(store, KeyFormat::new(["tak"])?, Hasher::fast(pepper))
        .with_catalog(catalog()?)
        .with_policy(IssuancePolicy::default().allow_never_expiring(true))
        .with_audit(keyward::TracingAudit);
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
    let app = Arc::new(App {
        manager,
        sessions: Mutex::new(HashMap::new()),
        tickets: Mutex::new(seed_tickets()),
        limiter: Arc::new(MemoryLimiter::new(LimitPolicy::default())),
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
    let throttle = Arc::new(FailureThrottle::new(Arc::clone(&app.limiter)));
    let bearer = KeywardLayer::new(Arc::clone(&app.manager))
        .realm(REALM)
        .throttle_failures(throttle);
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
async fn bearer_or_session(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let ctx = request_context(&req);
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
            None => Err(AuthError::Credentials(keyward::BearerError::Missing)),
        }
    };
    match result {
        Ok(proof) => {
            req.extensions_mut().insert(proof);
            next.run(req).await
        }
        Err(e) => error_response(&e, REALM),
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

async fn from_session(app: &App, id: &str) -> Result<Verified, AuthError> {
    let hash = session_hash(id);
    let proof = {
        let sessions = app.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(&hash) {
            Some(s) if s.expires_at > app.manager.now() => s.proof.clone(),
            _ => return Err(AuthError::Verify(VerifyError::Invalid)),
        }
    };
    // Every request re-checks the key: a disabled, revoked or expired key ends its sessions.
    match app.manager.refresh(&proof).await {
        Ok(fresh) => Ok(fresh),
        Err(e) => {
            if !matches!(e, VerifyError::Unavailable(_)) {
                app.sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&hash);
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
    let limit = now + Duration::hours(12);
    let expires_at = key.record().expires_at.map_or(limit, |at| at.min(limit));
    let max_age = (expires_at - now).whole_seconds().max(0);
    app.sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            session_hash(&id),
            Session {
                proof: key,
                expires_at,
            },
        );
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

fn lifecycle_error(e: &LifecycleError) -> Response {
    match e {
        LifecycleError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e),
        LifecycleError::Store(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "key store unavailable",
        ),
        _ => error(StatusCode::CONFLICT, "conflict", e),
    }
}

fn view(r: &KeyRecord) -> Value {
    json!({
        "id": r.id, "preview": r.preview(), "name": r.name, "owner": r.owner, "tenant": r.tenant,
        "scopes": r.scopes, "roles": r.roles, "restrictions": r.restrictions, "status": r.status,
        "created_at": r.created_at.unix_timestamp(),
        "expires_at": r.expires_at.map(OffsetDateTime::unix_timestamp),
        "last_used_at": r.last_used_at.map(OffsetDateTime::unix_timestamp),
    })
}

#[derive(Deserialize)]
struct IssueBody {
    name: String,
    owner: String,
    scopes: ScopeSet,
    expires_in_days: Option<i64>,
    restrictions: Option<Vec<String>>,
}

async fn admin_issue(
    State(app): State<Arc<App>>,
    caller: Verified,
    body: Result<Json<IssueBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()),
    };
    let mut request = IssueRequest::new(body.name, body.owner).scopes(body.scopes);
    if let Some(days) = body.expires_in_days {
        request = request.expiry(Expiry::After(Duration::days(days)));
    }
    if let Some(list) = body.restrictions {
        match Restrictions::only(list) {
            Ok(r) => request = request.restrictions(r),
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e),
        }
    }
    let ctx = RequestContext::new().actor(caller.key_id().to_string());
    match app.manager.issue_delegated(&caller, request, &ctx).await {
        Ok(issued) => (
            StatusCode::CREATED,
            Json(json!({
                "id": issued.record.id,
                "key": issued.key.expose_secret(),
                "preview": issued.record.preview(),
                "expires_at": issued.record.expires_at.map(OffsetDateTime::unix_timestamp),
            })),
        )
            .into_response(),
        Err(IssueError::Widening(what)) => error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("cannot grant more than the caller holds: {what}"),
        ),
        Err(IssueError::Store(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "key store unavailable",
        ),
        Err(IssueError::LimitReached { limit }) => error(
            StatusCode::CONFLICT,
            "limit_reached",
            format!("owner has {limit} live keys"),
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request", e),
    }
}

#[derive(Deserialize)]
struct OwnerQuery {
    owner: Option<String>,
}

async fn admin_list(State(app): State<Arc<App>>, Query(q): Query<OwnerQuery>) -> Response {
    let filter = q.owner.map_or(ListFilter::All, ListFilter::Owner);
    match app
        .manager
        .list(&filter, Page::first(Page::MAX_LIMIT))
        .await
    {
        Ok(records) => Json(records.iter().map(view).collect::<Vec<_>>()).into_response(),
        Err(e) => lifecycle_error(&e),
    }
}

fn not_found(e: keyward::KeyIdError) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", e)
}

async fn admin_disable(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let ctx = RequestContext::new().actor(caller.key_id().to_string());
    match id.parse::<KeyId>() {
        Ok(id) => app
            .manager
            .disable(&id, &ctx)
            .await
            .map_or_else(|e| lifecycle_error(&e), |r| Json(view(&r)).into_response()),
        Err(e) => not_found(e),
    }
}

async fn admin_enable(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let ctx = RequestContext::new().actor(caller.key_id().to_string());
    match id.parse::<KeyId>() {
        Ok(id) => app
            .manager
            .enable(&id, &ctx)
            .await
            .map_or_else(|e| lifecycle_error(&e), |r| Json(view(&r)).into_response()),
        Err(e) => not_found(e),
    }
}

async fn admin_revoke(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let ctx = RequestContext::new().actor(caller.key_id().to_string());
    match id.parse::<KeyId>() {
        Ok(id) => app
            .manager
            .revoke(&id, Some("admin"), &ctx)
            .await
            .map_or_else(|e| lifecycle_error(&e), |r| Json(view(&r)).into_response()),
        Err(e) => not_found(e),
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
    let ctx = RequestContext::new().actor(caller.key_id().to_string());
    let grace = Duration::seconds(body.map(|Json(b)| b.grace_seconds).unwrap_or_default());
    match id.parse::<KeyId>() {
        Ok(id) => match app.manager.rotate(&id, grace, &ctx).await {
            Ok(issued) => {
                Json(json!({ "id": issued.record.id, "key": issued.key.expose_secret() }))
                    .into_response()
            }
            Err(e) => lifecycle_error(&e),
        },
        Err(e) => not_found(e),
    }
}

async fn admin_delete(
    State(app): State<Arc<App>>,
    caller: Verified,
    Path(id): Path<String>,
) -> Response {
    let ctx = RequestContext::new().actor(caller.key_id().to_string());
    match id.parse::<KeyId>() {
        Ok(id) => app.manager.delete(&id, &ctx).await.map_or_else(
            |e| lifecycle_error(&e),
            |()| StatusCode::NO_CONTENT.into_response(),
        ),
        Err(e) => not_found(e),
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

#[derive(Deserialize)]
struct NewTicket {
    title: String,
    company: String,
    project: String,
}

async fn create_ticket(
    State(app): State<Arc<App>>,
    key: Verified,
    Json(body): Json<NewTicket>,
) -> Response {
    let Ok(resource) =
        format!("company:{}/project:{}", body.company, body.project).parse::<Resource>()
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "company and project must be ids",
        );
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

fn with_ticket(
    app: &App,
    key: &Verified,
    id: u64,
    needs: &'static str,
    change: impl FnOnce(&mut Ticket),
) -> Response {
    let mut all = tickets(app);
    let Some(ticket) = all.iter_mut().find(|t| t.id == id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such ticket");
    };
    if let Err(denied) = key.authorize(&scope(needs), ticket.resource().as_ref()) {
        return error_response(&denied.into(), REALM);
    }
    change(ticket);
    (StatusCode::OK, Json(ticket.clone())).into_response()
}

#[derive(Deserialize)]
struct CommentBody {
    body: String,
}

async fn comment(
    State(app): State<Arc<App>>,
    key: Verified,
    Path(id): Path<u64>,
    Json(b): Json<CommentBody>,
) -> Response {
    with_ticket(&app, &key, id, "comments", |t| t.comments.push(b.body))
}

#[derive(Deserialize)]
struct AssignBody {
    assignee: String,
}

async fn assign(
    State(app): State<Arc<App>>,
    key: Verified,
    Path(id): Path<u64>,
    Json(b): Json<AssignBody>,
) -> Response {
    with_ticket(&app, &key, id, "tickets:assign", |t| {
        t.assignee = Some(b.assignee)
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
