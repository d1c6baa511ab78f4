//! MCP servers protected by keyward (feature `mcp`): services built on the official Rust MCP
//! SDK, [`rmcp`], serving Streamable HTTP on axum.
//!
//! - `keyward::axum::KeywardLayer` verifies the key of every HTTP request to the MCP
//!   endpoint (401 with the RFC 6750 challenge otherwise) and puts the [`Verified`] proof
//!   into its extensions; rmcp hands the request's [`http::request::Parts`] to handlers, so
//!   [`verified`] finds the proof of *this* request in any handler's
//!   [`RequestContext`](rmcp::service::RequestContext).
//! - [`ToolScopes`] says which scope each tool needs: [`ToolScopes::list`] lists only the
//!   tools the key may call, and [`ToolScopes::check`] refuses a call outside the key's
//!   scopes with an MCP error (`-32602`, data `{"error": "insufficient_scope", "scope": …}`),
//!   before the tool runs. A tool not declared is neither listed nor callable. Tools that
//!   touch a resource check it with [`authorize`].
//! - [`SessionBinding`] binds each MCP session (`Mcp-Session-Id`) to the key that opened
//!   it, and closes the sessions of keys that stopped working.
//! - [`audit_context`] is the audit context of a tool call: channel `mcp`, client address,
//!   request id; with [`KeyManager::record_action`] a tool's write names the key and the
//!   channel.
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::Router;
//! use keyward::axum::KeywardLayer;
//! use keyward::audit::Channel;
//! use keyward::mcp::{SessionBinding, ToolScopes};
//! use keyward::{Hasher, KeyFormat, KeyManager, MemoryStore, Pepper};
//! use rmcp::model::{
//!     CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult,
//!     PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
//! };
//! use rmcp::service::RequestContext;
//! use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
//! use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
//! use rmcp::{ErrorData, RoleServer, ServerHandler};
//! use serde_json::json;
//!
//! #[derive(Clone)]
//! struct Tickets {
//!     scopes: Arc<ToolScopes>,
//! }
//!
//! impl ServerHandler for Tickets {
//!     fn get_info(&self) -> ServerConfig {
//!         ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
//!     }
//!
//!     async fn list_tools(
//!         &self,
//!         _: Option<PaginatedRequestParams>,
//!         ctx: RequestContext<RoleServer>,
//!     ) -> Result<ListToolsResult, ErrorData> {
//!         let schema = rmcp::model::object(json!({ "type": "object" }));
//!         self.scopes.list(&ctx, [Tool::new("list_tickets", "The tickets this key may read", schema)])
//!     }
//!
//!     async fn call_tool(
//!         &self,
//!         call: CallToolRequestParams,
//!         ctx: RequestContext<RoleServer>,
//!     ) -> Result<CallToolResponse, ErrorData> {
//!         let key = self.scopes.check(&ctx, &call.name)?; // the proof of this request
//!         let answer = json!({ "owner": key.owner() });
//!         Ok(CallToolResult::structured(answer).into())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = Arc::new(KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?)));
//! let scopes = Arc::new(ToolScopes::new().tool("list_tickets", "read".parse()?));
//! let sessions = Arc::new(LocalSessionManager::default());
//! let mcp = StreamableHttpService::new(
//!     move || Ok(Tickets { scopes: Arc::clone(&scopes) }),
//!     Arc::clone(&sessions),
//!     StreamableHttpServerConfig::default(),
//! );
//! let app: Router = Router::new()
//!     .route_service("/mcp", SessionBinding::new(Arc::clone(&manager), sessions).bind(mcp))
//!     .layer(KeywardLayer::new(manager).channel(Channel::MCP));
//! # Ok(()) }
//! ```
//!
//! # What is guaranteed
//!
//! - Every HTTP request to the endpoint (each `POST` of a JSON-RPC message, each `GET` that
//!   opens or resumes a stream, each `DELETE`) is verified with its own key by the layer: a
//!   missing, unknown, revoked, disabled or expired key gets 401 before rmcp reads anything,
//!   and a key revoked during a session is refused at its next request.
//! - A session id is accepted only with the key that opened it: with any other key, or when
//!   it was never bound, the request is answered exactly like an unknown session (404, as
//!   rmcp answers one), so a session id of another key is indistinguishable from a made-up one.
//! - When a key stops working (revoked, disabled, expired, deleted, or an ancestor of a
//!   delegated key did), its sessions are closed, which ends their open streams, and their
//!   ids answer 404 from then on: at the next check, at most [`SessionBinding::check_every`]
//!   after the key died (default 10 s), or at once when the application calls
//!   [`SessionBinding::close_key`] (for example right after revoking the key). Until then an
//!   open stream may still carry messages of requests made before the key died; no new
//!   request of that key gets through.
//! - Tool results are computed with the proof of the request that called the tool, never a
//!   proof remembered from the session's start, so a narrowed key is narrowed at once.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::request::Parts;
use http::{Method, Request, StatusCode};
use rmcp::ErrorData;
use rmcp::RoleServer;
use rmcp::model::{ErrorCode, ListToolsResult, Tool};
use rmcp::service::RequestContext as McpContext;
use rmcp::transport::streamable_http_server::{SessionId, SessionManager};
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::{Channel, RequestContext};
use crate::http::{AuthError, BearerError, ErrorKind};
use crate::key::id::KeyId;
use crate::manager::{KeyManager, VerifyError};
use crate::scope::{Resource, Scope};
use crate::store::KeyStore;
use crate::verified::Verified;

/// The header that carries an MCP session id.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// How often [`SessionBinding`] checks the keys of open sessions unless told otherwise.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// The sessions one key may hold at once unless told otherwise; opening another closes the
/// key's oldest.
pub const DEFAULT_MAX_SESSIONS_PER_KEY: usize = 32;

/// The MCP error for an authentication or authorization failure, from the class the `http`
/// module gives it: `-32602` (invalid params) for a missing scope or resource, with data
/// `{"error": "insufficient_scope", "scope": …}`, and for a key not allowed from the
/// client's network (`{"error": "ip_not_allowed"}`); `-32600` (invalid request) for missing or
/// refused credentials; `-32603` (internal error) for a rate limit or an unavailable store.
/// The message never contains the key.
#[must_use]
pub fn error(error: &AuthError) -> ErrorData {
    let kind = error.kind();
    let mut data = json!({ "error": kind.code() });
    if let AuthError::Denied(denied) = error
        && let Some(scope) = denied.missing_scope()
    {
        data["scope"] = json!(scope.as_str());
    }
    if let Some(secs) = error.retry_after_secs() {
        data["retry_after"] = json!(secs);
    }
    let code = match kind {
        ErrorKind::InsufficientScope | ErrorKind::NetworkNotAllowed => ErrorCode::INVALID_PARAMS,
        ErrorKind::Unauthorized | ErrorKind::InvalidRequest | ErrorKind::InvalidToken => {
            ErrorCode::INVALID_REQUEST
        }
        ErrorKind::RateLimited | ErrorKind::Unavailable => ErrorCode::INTERNAL_ERROR,
    };
    ErrorData::new(code, error.public_message(), Some(data))
}

/// The proof that the key of this MCP request verified (put there by the axum layer).
///
/// # Errors
/// An MCP error (`-32600`, missing credentials) when the request did not pass through
/// `keyward::axum::KeywardLayer`.
pub fn verified(ctx: &McpContext<RoleServer>) -> Result<&Verified, ErrorData> {
    ctx.extensions
        .get::<Parts>()
        .and_then(|parts| parts.extensions.get::<Verified>())
        .ok_or_else(|| error(&AuthError::Credentials(BearerError::Missing)))
}

/// The proof of this MCP request, if its key holds `required` and, when the tool touches a
/// `resource`, the key's restrictions contain it.
///
/// # Errors
/// An MCP error without a proof, and `-32602` naming what is missing (see [`error`]).
pub fn authorize<'c>(
    ctx: &'c McpContext<RoleServer>,
    required: &Scope,
    resource: Option<&Resource>,
) -> Result<&'c Verified, ErrorData> {
    let proof = verified(ctx)?;
    proof
        .authorize(required, resource)
        .map_err(|denied| error(&AuthError::Denied(denied)))?;
    Ok(proof)
}

/// The audit context of an MCP request, channel `mcp`: the context the keyward layer
/// verified the request in (its client address read through any trusted proxies, its
/// request id), or, without the layer, the client address from axum's
/// `ConnectInfo<SocketAddr>` and the `x-request-id` header.
#[must_use]
pub fn audit_context(ctx: &McpContext<RoleServer>) -> RequestContext {
    let context = RequestContext::new().channel(Channel::MCP);
    let Some(parts) = ctx.extensions.get::<Parts>() else {
        return context;
    };
    if let Some(verified_in) = parts.extensions.get::<RequestContext>() {
        return verified_in.clone().channel(Channel::MCP);
    }
    let context = match parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) => context.request_id(id.chars().take(128).collect::<String>()),
        None => context,
    };
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => context.client_addr(addr.ip()),
        None => context,
    }
}

/// Which scope each tool needs: the tool list and every tool call follow the key's scopes.
///
/// A tool that was not declared is treated as out of every key's reach (neither listed nor
/// callable), so forgetting a declaration hides a tool rather than opening it.
///
/// ```
/// use keyward::mcp::ToolScopes;
///
/// let tools = ToolScopes::new()
///     .tool("list_tickets", "read".parse()?)
///     .tool("create_ticket", "tickets:write".parse()?);
/// assert_eq!(tools.scope("create_ticket").map(|s| s.as_str()), Some("tickets:write"));
/// assert!(tools.scope("drop_database").is_none());
/// # Ok::<(), keyward::scope::ScopeError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ToolScopes {
    needs: HashMap<String, Scope>,
}

impl ToolScopes {
    /// No tools.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares that calling `name` needs `scope` (a later declaration of the same tool
    /// replaces the earlier one).
    #[must_use]
    pub fn tool(mut self, name: impl Into<String>, scope: Scope) -> Self {
        self.needs.insert(name.into(), scope);
        self
    }

    /// The scope `name` needs, if it was declared.
    #[must_use]
    pub fn scope(&self, name: &str) -> Option<&Scope> {
        self.needs.get(name)
    }

    /// Whether the key of `proof` may call `name`.
    #[must_use]
    pub fn allows(&self, proof: &Verified, name: &str) -> bool {
        self.scope(name).is_some_and(|scope| proof.allows(scope))
    }

    /// The tools among `tools` that the key of `proof` may call, in the given order.
    #[must_use]
    pub fn visible(&self, proof: &Verified, tools: impl IntoIterator<Item = Tool>) -> Vec<Tool> {
        tools
            .into_iter()
            .filter(|tool| self.allows(proof, &tool.name))
            .collect()
    }

    /// The answer to `tools/list`: the tools among `tools` that this request's key may call.
    ///
    /// # Errors
    /// An MCP error when the request carries no proof (see [`verified`]).
    pub fn list(
        &self,
        ctx: &McpContext<RoleServer>,
        tools: impl IntoIterator<Item = Tool>,
    ) -> Result<ListToolsResult, ErrorData> {
        let proof = verified(ctx)?;
        Ok(ListToolsResult::with_all_items(self.visible(proof, tools)))
    }

    /// Allows a call of `name` when this request's key holds the tool's scope, and returns
    /// the request's proof (for the tool's own resource checks and attribution).
    ///
    /// # Errors
    /// An MCP error without a proof; `-32602` naming the missing scope when the key lacks
    /// it; `-32602` `tool not found` (rmcp's answer for an unknown tool) when `name` was not
    /// declared.
    pub fn check<'c>(
        &self,
        ctx: &'c McpContext<RoleServer>,
        name: &str,
    ) -> Result<&'c Verified, ErrorData> {
        let proof = verified(ctx)?;
        let Some(scope) = self.scope(name) else {
            return Err(ErrorData::invalid_params("tool not found", None));
        };
        proof
            .authorize(scope, None)
            .map_err(|denied| error(&AuthError::Denied(denied)))?;
        Ok(proof)
    }
}

/// A tower layer, inside `keyward::axum::KeywardLayer` and around rmcp's
/// `StreamableHttpService`, that binds each MCP session to the key that opened it.
///
/// - The `Mcp-Session-Id` that answers an `initialize` is bound to the request's key.
/// - A request naming a session is passed on only when its key is the session's; otherwise
///   it gets 404 `Not Found: Session not found`, as for a session that does not exist.
/// - At most every [`check_every`](Self::check_every), a background task (started with the
///   first request, ended when the layer and its services are dropped) re-reads the key of
///   every bound session ([`KeyManager::refresh`]) and closes the sessions of keys that
///   stopped working, which ends their streams. [`close_key`](Self::close_key) does it at
///   once for one key, [`sweep`](Self::sweep) for all.
/// - A key holds at most [`max_sessions_per_key`](Self::max_sessions_per_key) sessions
///   (default [`DEFAULT_MAX_SESSIONS_PER_KEY`]): opening another closes its oldest.
/// - A session closed by the client (`DELETE`) or by rmcp is forgotten.
pub struct SessionBinding<S, M> {
    shared: Arc<Shared<S, M>>,
}

struct Shared<S, M> {
    manager: Arc<KeyManager<S>>,
    sessions: Arc<M>,
    bound: Mutex<Bindings>,
    interval: Duration,
    max_per_key: usize,
    started: AtomicBool,
}

/// The bound sessions by id, each with the latest proof of its key.
#[derive(Default, Clone)]
struct Bindings {
    by_id: HashMap<String, Bound>,
    /// Binding order, to find a key's oldest session.
    next_seq: u64,
}

#[derive(Clone)]
struct Bound {
    proof: Verified,
    seq: u64,
}

impl Bindings {
    /// Binds `id` to the key of `proof`; returns the sessions of that key to close, its
    /// oldest beyond `max_per_key`.
    fn bind(&mut self, id: String, proof: Verified, max_per_key: usize) -> Vec<String> {
        let key = proof.key_id();
        let mut mine: Vec<(u64, String)> = self
            .by_id
            .iter()
            .filter(|(_, b)| b.proof.key_id() == key)
            .map(|(id, b)| (b.seq, id.clone()))
            .collect();
        let mut evicted = Vec::new();
        if mine.len() >= max_per_key {
            mine.sort_unstable();
            let excess = mine.len() + 1 - max_per_key;
            for (_, old) in mine.into_iter().take(excess) {
                self.by_id.remove(&old);
                evicted.push(old);
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_id.insert(id, Bound { proof, seq });
        evicted
    }
}

impl<S, M> Clone for SessionBinding<S, M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, M> fmt::Debug for SessionBinding<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBinding")
            .field("sessions", &self.shared.len())
            .field("interval", &self.shared.interval)
            .finish_non_exhaustive()
    }
}

impl<S, M> Shared<S, M> {
    fn bound(&self) -> std::sync::MutexGuard<'_, Bindings> {
        self.bound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.bound().by_id.len()
    }
}

impl<S: KeyStore + 'static, M: SessionManager> SessionBinding<S, M> {
    /// Binds the sessions of `sessions` (the session manager given to rmcp's
    /// `StreamableHttpService`) and checks their keys with `manager` (the layer's).
    pub fn new(manager: impl Into<Arc<KeyManager<S>>>, sessions: Arc<M>) -> Self {
        Self {
            shared: Arc::new(Shared {
                manager: manager.into(),
                sessions,
                bound: Mutex::new(Bindings::default()),
                interval: DEFAULT_CHECK_INTERVAL,
                max_per_key: DEFAULT_MAX_SESSIONS_PER_KEY,
                started: AtomicBool::new(false),
            }),
        }
    }

    /// The same binding with other settings, before any request (services made earlier keep
    /// the old ones).
    fn with(self, f: impl FnOnce(&mut Duration, &mut usize)) -> Self {
        let (mut interval, mut max_per_key) = (self.shared.interval, self.shared.max_per_key);
        f(&mut interval, &mut max_per_key);
        let shared = Arc::new(Shared {
            manager: Arc::clone(&self.shared.manager),
            sessions: Arc::clone(&self.shared.sessions),
            // Copied, not moved: services made earlier keep their bindings.
            bound: Mutex::new(Bindings::clone(&self.shared.bound())),
            interval,
            max_per_key,
            started: AtomicBool::new(false),
        });
        Self { shared }
    }

    /// Checks the keys of open sessions this often (default [`DEFAULT_CHECK_INTERVAL`]; at
    /// least 10 ms). Set it before making services.
    #[must_use]
    pub fn check_every(self, interval: Duration) -> Self {
        self.with(|i, _| *i = interval.max(Duration::from_millis(10)))
    }

    /// Lets one key hold at most `max` sessions (at least 1; default
    /// [`DEFAULT_MAX_SESSIONS_PER_KEY`]): opening another closes the key's oldest. Set it
    /// before making services.
    #[must_use]
    pub fn max_sessions_per_key(self, max: usize) -> Self {
        self.with(|_, m| *m = max.max(1))
    }

    /// Wraps `service` (rmcp's `StreamableHttpService`): the same as [`Layer::layer`].
    pub fn bind<Svc>(&self, service: Svc) -> SessionBindingService<S, M, Svc> {
        self.layer(service)
    }

    /// The number of sessions bound to `key`.
    #[must_use]
    pub fn sessions_of(&self, key: &KeyId) -> usize {
        self.shared
            .bound()
            .by_id
            .values()
            .filter(|b| b.proof.key_id() == *key)
            .count()
    }

    /// Closes every session of `key` now (call it after revoking or disabling the key):
    /// their streams end and their ids answer 404. Returns how many were closed. Sessions
    /// of keys delegated from `key` are not closed here: they close at the next check (or
    /// call [`sweep`](Self::sweep)), and each of their requests is refused meanwhile.
    pub async fn close_key(&self, key: &KeyId) -> usize {
        let ids: Vec<String> = {
            let mut bound = self.shared.bound();
            let ids: Vec<String> = bound
                .by_id
                .iter()
                .filter(|(_, b)| b.proof.key_id() == *key)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                bound.by_id.remove(id);
            }
            ids
        };
        for id in &ids {
            close(&*self.shared.sessions, id).await;
        }
        ids.len()
    }

    /// Checks the key of every bound session once and closes the sessions of keys that no
    /// longer verify (a store that cannot answer closes nothing); forgets sessions that rmcp
    /// no longer has. Returns how many sessions were closed.
    pub async fn sweep(&self) -> usize {
        self.shared.sweep().await
    }
}

impl<S: KeyStore + 'static, M: SessionManager> Shared<S, M> {
    async fn sweep(&self) -> usize {
        let snapshot: Vec<(String, Verified)> = self
            .bound()
            .by_id
            .iter()
            .map(|(id, b)| (id.clone(), b.proof.clone()))
            .collect();
        // One store read per key, however many sessions it holds.
        let mut alive: HashMap<KeyId, bool> = HashMap::new();
        let mut closed = 0;
        for (id, proof) in snapshot {
            let key = proof.key_id();
            let lives = match alive.get(&key) {
                Some(lives) => *lives,
                None => {
                    // An outage closes nothing (the next check decides).
                    let lives = match self.manager.refresh(&proof).await {
                        Ok(_) | Err(VerifyError::Unavailable(_)) => true,
                        Err(_) => false,
                    };
                    alive.insert(key, lives);
                    lives
                }
            };
            let session: SessionId = id.as_str().into();
            if !lives {
                self.bound().by_id.remove(&id);
                close(&*self.sessions, &id).await;
                closed += 1;
            } else if matches!(self.sessions.has_session(&session).await, Ok(false)) {
                self.bound().by_id.remove(&id);
            }
        }
        closed
    }
}

/// Asks rmcp to close a session (its streams end); a failure is logged without its error,
/// whose text may name the session id.
async fn close<M: SessionManager>(sessions: &M, id: &str) {
    let session: SessionId = id.into();
    if sessions.close_session(&session).await.is_err() {
        tracing::warn!(target: "keyward", "could not close an MCP session");
    }
}

/// Checks the bound sessions every interval while any service of the layer lives.
async fn check_periodically<S: KeyStore + 'static, M: SessionManager>(shared: Weak<Shared<S, M>>) {
    let Some(interval) = shared.upgrade().map(|s| s.interval) else {
        return;
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.sweep().await;
    }
}

impl<S, M, Svc> Layer<Svc> for SessionBinding<S, M> {
    type Service = SessionBindingService<S, M, Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        SessionBindingService {
            shared: Arc::clone(&self.shared),
            inner,
        }
    }
}

/// The service made by [`SessionBinding`].
pub struct SessionBindingService<S, M, Svc> {
    shared: Arc<Shared<S, M>>,
    inner: Svc,
}

impl<S, M, Svc: Clone> Clone for SessionBindingService<S, M, Svc> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            inner: self.inner.clone(),
        }
    }
}

impl<S, M, Svc> fmt::Debug for SessionBindingService<S, M, Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBindingService")
            .field("sessions", &self.shared.len())
            .finish_non_exhaustive()
    }
}

/// rmcp's answer for a session it does not know, given for one bound to another key too.
fn unknown_session() -> Response {
    let mut response = Response::new(Body::from("Not Found: Session not found"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The response future of [`SessionBindingService`].
pub type SessionFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S, M, Svc, B, RB> Service<Request<B>> for SessionBindingService<S, M, Svc>
where
    S: KeyStore + 'static,
    M: SessionManager,
    Svc: Service<Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    Svc::Future: Send,
    Svc::Error: Send + 'static,
    B: Send + 'static,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = Svc::Error;
    type Future = SessionFuture<Svc::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.shared.started.load(Ordering::Acquire) {
            // rmcp runs on tokio; outside a runtime the check waits for the first call inside.
            if let Ok(runtime) = tokio::runtime::Handle::try_current()
                && !self.shared.started.swap(true, Ordering::AcqRel)
            {
                runtime.spawn(check_periodically(Arc::downgrade(&self.shared)));
            }
        }
        let Some(proof) = req.extensions().get::<Verified>().cloned() else {
            let refusal = crate::axum::error_response(
                &AuthError::Credentials(BearerError::Missing),
                crate::tower::DEFAULT_REALM,
            );
            return Box::pin(async move { Ok(refusal) });
        };
        let session = match req.headers().get(SESSION_HEADER) {
            None => None,
            Some(value) => match value.to_str() {
                Ok(id) => Some(id.to_owned()),
                Err(_) => return Box::pin(async { Ok(unknown_session()) }),
            },
        };
        if let Some(id) = &session {
            let mut bound = self.shared.bound();
            match bound.by_id.get_mut(id) {
                // The latest proof, so that a check re-reads the key as it was last seen.
                Some(owner) if owner.proof.key_id() == proof.key_id() => {
                    owner.proof = proof.clone();
                }
                _ => return Box::pin(async { Ok(unknown_session()) }),
            }
        }
        let deleting = req.method() == Method::DELETE;
        let shared = Arc::clone(&self.shared);
        let mut inner = crate::tower::take_ready(&mut self.inner);
        Box::pin(async move {
            let response = inner.call(req).await?;
            match &session {
                Some(id) if deleting && response.status().is_success() => {
                    shared.bound().by_id.remove(id);
                }
                Some(_) => {}
                None => {
                    let opened = response
                        .headers()
                        .get(SESSION_HEADER)
                        .and_then(|v| v.to_str().ok());
                    if let Some(id) = opened {
                        let evicted = shared
                            .bound()
                            .bind(id.to_owned(), proof, shared.max_per_key);
                        for old in evicted {
                            close(&*shared.sessions, &old).await;
                        }
                    }
                }
            }
            Ok(response.map(Body::new))
        })
    }
}
