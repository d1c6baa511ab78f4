//! `keyward::mcp` on its own: an rmcp Streamable HTTP server behind `KeywardLayer` and
//! `SessionBinding`, driven request by request through the router (no network): tools
//! filtered and calls refused by scope, sessions bound to their key, a revoked key refused
//! mid-session and its open streams closed, the channel in audit events.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use keyward::audit::{AuditKind, AuditLog, Channel};
use keyward::axum::KeywardLayer;
use keyward::mcp::{SessionBinding, ToolScopes, audit_context};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyId, KeyManager, MemoryStore, Pepper, RequestContext,
    ScopeCatalog,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, object,
};
use rmcp::service::RequestContext as McpContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tower::ServiceExt;

type Manager = Arc<KeyManager<MemoryStore>>;

#[derive(Clone)]
struct Notes {
    manager: Manager,
    scopes: Arc<ToolScopes>,
}

impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        ctx: McpContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = ["read_notes", "write_note", "undeclared"]
            .map(|name| Tool::new(name, "a tool", object(json!({ "type": "object" }))));
        self.scopes.list(&ctx, tools)
    }

    async fn call_tool(
        &self,
        call: CallToolRequestParams,
        ctx: McpContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let key = self.scopes.check(&ctx, &call.name)?;
        if call.name == "write_note" {
            self.manager
                .record_action(key, "note.write", None, &audit_context(&ctx));
        }
        let answer = json!({ "tool": call.name, "key_id": key.key_id(), "owner": key.owner() });
        Ok(CallToolResult::structured(answer).into())
    }
}

struct Fixture {
    manager: Manager,
    log: AuditLog,
    binding: SessionBinding<MemoryStore, LocalSessionManager>,
    app: Router,
}

fn fixture(check_every: Duration) -> Fixture {
    fixture_with(check_every, keyward::mcp::DEFAULT_MAX_SESSIONS_PER_KEY)
}

fn fixture_with(check_every: Duration, max_per_key: usize) -> Fixture {
    let log = AuditLog::new();
    let catalog = ScopeCatalog::builder()
        .implies("notes:write", "notes:read")
        .build()
        .expect("catalog");
    let manager: Manager = Arc::new(
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::random("k1").expect("pepper")),
        )
        .with_catalog(catalog)
        .with_audit(log.clone()),
    );
    let scopes = Arc::new(
        ToolScopes::new()
            .tool("read_notes", "notes:read".parse().expect("scope"))
            .tool("write_note", "notes:write".parse().expect("scope")),
    );
    let sessions = Arc::new(LocalSessionManager::default());
    let notes = Notes {
        manager: Arc::clone(&manager),
        scopes,
    };
    let service = StreamableHttpService::new(
        move || Ok(notes.clone()),
        Arc::clone(&sessions),
        StreamableHttpServerConfig::default(),
    );
    let binding = SessionBinding::new(Arc::clone(&manager), sessions)
        .check_every(check_every)
        .max_sessions_per_key(max_per_key);
    let app = Router::new()
        .route_service("/mcp", binding.bind(service))
        .layer(KeywardLayer::new(Arc::clone(&manager)).channel(Channel::MCP));
    Fixture {
        manager,
        log,
        binding,
        app,
    }
}

impl Fixture {
    async fn key(&self, name: &str, scope: &str) -> (KeyId, String) {
        let issued = self
            .manager
            .issue(
                IssueRequest::new(name, "jason").scopes(scope.parse().expect("scopes")),
                &RequestContext::new(),
            )
            .await
            .expect("issue");
        (issued.key.id(), issued.key.expose_secret().to_owned())
    }

    async fn send(
        &self,
        method: &str,
        key: &str,
        session: Option<&str>,
        body: Value,
    ) -> Response<Body> {
        let mut request = Request::builder()
            .method(method)
            .uri("http://localhost/mcp")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(id) = session {
            request = request.header("mcp-session-id", id);
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        self.app
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible")
    }

    /// `initialize` and `notifications/initialized`; the session id.
    async fn open(&self, key: &str) -> String {
        let init = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": "test", "version": "1" } }
        });
        let response = self.send("POST", key, None, init).await;
        assert_eq!(response.status(), StatusCode::OK);
        let id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .expect("a session id")
            .to_owned();
        let events = events(response).await;
        assert!(events[0]["result"]["capabilities"]["tools"].is_object());
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let response = self.send("POST", key, Some(&id), initialized).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        id
    }

    /// One JSON-RPC request in a session; its answer.
    async fn rpc(&self, key: &str, session: &str, method: &str, params: Value) -> Value {
        let message = json!({ "jsonrpc": "2.0", "id": 2, "method": method, "params": params });
        let response = self.send("POST", key, Some(session), message).await;
        assert_eq!(response.status(), StatusCode::OK);
        events(response).await.pop().expect("an answer")
    }
}

async fn text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The JSON-RPC messages of an SSE answer.
async fn events(response: Response<Body>) -> Vec<Value> {
    text(response)
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

fn tool_names(answer: &Value) -> Vec<&str> {
    answer["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn the_tool_list_and_every_call_follow_the_keys_scopes() {
    let f = fixture(HOUR);
    let (reader_id, reader) = f.key("reader", "notes:read").await;
    let (_, writer) = f.key("writer", "notes:write").await;

    let session = f.open(&reader).await;
    let listed = f.rpc(&reader, &session, "tools/list", json!({})).await;
    assert_eq!(
        tool_names(&listed),
        ["read_notes"],
        "undeclared tools are hidden too"
    );
    let read = f
        .rpc(
            &reader,
            &session,
            "tools/call",
            json!({ "name": "read_notes" }),
        )
        .await;
    assert_eq!(
        read["result"]["structuredContent"]["key_id"],
        json!(reader_id),
        "the tool sees the proof of its request"
    );
    let refused = f
        .rpc(
            &reader,
            &session,
            "tools/call",
            json!({ "name": "write_note" }),
        )
        .await;
    assert!(refused.get("result").is_none(), "never data: {refused}");
    assert_eq!(refused["error"]["code"], -32602);
    assert_eq!(refused["error"]["message"], "missing scope notes:write");
    assert_eq!(
        refused["error"]["data"],
        json!({ "error": "insufficient_scope", "scope": "notes:write" })
    );
    let undeclared = f
        .rpc(
            &reader,
            &session,
            "tools/call",
            json!({ "name": "undeclared" }),
        )
        .await;
    assert_eq!(undeclared["error"]["code"], -32602);
    assert!(undeclared.get("result").is_none());

    let session = f.open(&writer).await;
    let listed = f.rpc(&writer, &session, "tools/list", json!({})).await;
    assert_eq!(tool_names(&listed), ["read_notes", "write_note"]);
    let wrote = f
        .rpc(
            &writer,
            &session,
            "tools/call",
            json!({ "name": "write_note" }),
        )
        .await;
    assert_eq!(wrote["result"]["structuredContent"]["owner"], "jason");

    // Audit: verifications and the tool's action say they came via MCP.
    let events = f.log.events();
    let verified: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::Verified))
        .collect();
    assert!(!verified.is_empty(), "no verification was audited");
    assert!(
        verified
            .iter()
            .all(|e| e.context.channel == Some(Channel::MCP))
    );
    let action = events
        .iter()
        .find(|e| matches!(e.kind, AuditKind::Action { .. }))
        .expect("an action event");
    assert_eq!(action.name.as_deref(), Some("writer"));
    assert_eq!(action.owner.as_deref(), Some("jason"));
    assert_eq!(action.context.channel, Some(Channel::MCP));
}

#[tokio::test]
async fn a_session_answers_only_the_key_that_opened_it() {
    let f = fixture(HOUR);
    let (alice_id, alice) = f.key("alice", "notes:read").await;
    let (_, bob) = f.key("bob", "notes:write").await;
    let session = f.open(&alice).await;
    assert_eq!(f.binding.sessions_of(&alice_id), 1);

    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let stolen = f.send("POST", &bob, Some(&session), list.clone()).await;
    assert_eq!(stolen.status(), StatusCode::NOT_FOUND);
    let stolen = text(stolen).await;
    let made_up = f
        .send(
            "POST",
            &bob,
            Some("0b0e6c4e-0000-4000-8000-000000000000"),
            list.clone(),
        )
        .await;
    assert_eq!(made_up.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        stolen,
        text(made_up).await,
        "another key's session looks made up"
    );
    let streamed = f.send("GET", &bob, Some(&session), Value::Null).await;
    assert_eq!(streamed.status(), StatusCode::NOT_FOUND);
    let deleted = f.send("DELETE", &bob, Some(&session), Value::Null).await;
    assert_eq!(deleted.status(), StatusCode::NOT_FOUND);

    // Still Alice's, until she ends it.
    let listed = f.rpc(&alice, &session, "tools/list", json!({})).await;
    assert_eq!(tool_names(&listed), ["read_notes"]);
    let ended = f.send("DELETE", &alice, Some(&session), Value::Null).await;
    assert!(ended.status().is_success(), "{}", ended.status());
    assert_eq!(f.binding.sessions_of(&alice_id), 0);
    let after = f.send("POST", &alice, Some(&session), list).await;
    assert_eq!(after.status(), StatusCode::NOT_FOUND);

    // Without credentials: 401 with the challenge, before rmcp reads anything.
    let anonymous = f
        .app
        .clone()
        .oneshot(
            Request::post("http://localhost/mcp")
                .header("host", "localhost")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
}

/// Opens the session's standalone stream (`GET`) and waits, at most `limit`, for it to end.
async fn stream_ends_within(
    f: &Fixture,
    key: &str,
    session: &str,
    limit: Duration,
) -> tokio::task::JoinHandle<bool> {
    let response = f.send("GET", key, Some(session), Value::Null).await;
    assert_eq!(response.status(), StatusCode::OK);
    tokio::spawn(async move {
        tokio::time::timeout(limit, axum::body::to_bytes(response.into_body(), 1 << 20))
            .await
            .is_ok()
    })
}

#[tokio::test]
async fn a_key_revoked_mid_session_is_refused_and_its_streams_close() {
    let f = fixture(HOUR);
    let (id, key) = f.key("doomed", "notes:read").await;
    let (other_id, other) = f.key("other", "notes:read").await;
    let session = f.open(&key).await;
    let kept = f.open(&other).await;
    let stream = stream_ends_within(&f, &key, &session, Duration::from_secs(10)).await;
    let listed = f.rpc(&key, &session, "tools/list", json!({})).await;
    assert_eq!(tool_names(&listed), ["read_notes"]);

    f.manager
        .revoke(&id, Some("test"), &RequestContext::new())
        .await
        .expect("revoke");
    let list = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" });
    let refused = f.send("POST", &key, Some(&session), list).await;
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "refused at its next request"
    );
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .expect("ascii");
    assert!(challenge.contains("invalid_token"), "{challenge}");

    assert_eq!(
        f.binding.sweep().await,
        1,
        "the dead key's session is closed"
    );
    assert!(stream.await.expect("task"), "its open stream ended");
    assert_eq!(f.binding.sessions_of(&id), 0);
    // The other key's session lives on.
    assert_eq!(f.binding.sessions_of(&other_id), 1);
    let listed = f.rpc(&other, &kept, "tools/list", json!({})).await;
    assert_eq!(tool_names(&listed), ["read_notes"]);
}

#[tokio::test]
async fn the_background_check_closes_the_streams_of_a_dead_key() {
    let f = fixture(Duration::from_millis(20));
    let (id, key) = f.key("doomed", "notes:read").await;
    let session = f.open(&key).await;
    let stream = stream_ends_within(&f, &key, &session, Duration::from_secs(20)).await;
    f.manager
        .disable(&id, &RequestContext::new())
        .await
        .expect("disable");
    assert!(
        stream.await.expect("task"),
        "the stream ended without a request"
    );
    assert_eq!(f.binding.sessions_of(&id), 0);
}

#[tokio::test]
async fn close_key_ends_a_keys_sessions_at_once() {
    let f = fixture(HOUR);
    let (id, key) = f.key("k", "notes:read").await;
    let first = f.open(&key).await;
    let _second = f.open(&key).await;
    let stream = stream_ends_within(&f, &key, &first, Duration::from_secs(10)).await;
    assert_eq!(f.binding.sessions_of(&id), 2);
    assert_eq!(f.binding.close_key(&id).await, 2);
    assert!(stream.await.expect("task"));
    let list = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" });
    let gone = f.send("POST", &key, Some(&first), list).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_key_holds_a_bounded_number_of_sessions() {
    let f = fixture_with(HOUR, 2);
    let (id, key) = f.key("k", "notes:read").await;
    let (other_id, other) = f.key("other", "notes:read").await;
    let oldest = f.open(&key).await;
    let stream = stream_ends_within(&f, &key, &oldest, Duration::from_secs(10)).await;
    let _kept = f.open(&other).await;
    let second = f.open(&key).await;
    let third = f.open(&key).await;
    assert_eq!(f.binding.sessions_of(&id), 2);
    assert_eq!(
        f.binding.sessions_of(&other_id),
        1,
        "other keys are not charged"
    );
    assert!(stream.await.expect("task"), "the oldest session was closed");
    let list = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" });
    let gone = f.send("POST", &key, Some(&oldest), list).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    for session in [second, third] {
        let listed = f.rpc(&key, &session, "tools/list", json!({})).await;
        assert_eq!(tool_names(&listed), ["read_notes"]);
    }
}
