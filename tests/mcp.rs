//! The example service's MCP server, driven by real MCP clients over loopback: `rmcp`'s own
//! client (always), and the official MCP Python SDK through `tests/mcp_client.py`
//! (`live_python_sdk`, with `KEYWARD_TEST_INTEROP=1`, as `.ci/run` sets it).
//!
//! The server is started as `tests/server_e2e.rs` starts it (the `cargo` running this test
//! builds it with `--features axum,rate-limit,secret-scanning,sqlite`), and the clients are
//! configured from the README's `mcpServers` blocks, not from a copy.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

#[path = "support/example.rs"]
mod example;

const README: &str = include_str!("../README.md");

fn server_path() -> PathBuf {
    example::build("server", "axum,rate-limit,secret-scanning,sqlite")
}

struct Server {
    child: Child,
    addr: String,
    admin: String,
    audit: PathBuf,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("keyward-mcp-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key_file = dir.join("admin.key");
    let audit = dir.join("audit.jsonl");
    let child = Command::new(server_path())
        .env("KEYWARD_ADDR", &addr)
        .env("KEYWARD_ADMIN_KEY_FILE", &key_file)
        .env("KEYWARD_AUDIT_LOG_FILE", &audit)
        .env("KEYWARD_DATABASE_URL", "memory:")
        .env_remove("KEYWARD_PEPPER")
        .env_remove("KEYWARD_SCANNING_KEYS_FILE")
        .env_remove("KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut server = Server {
        child,
        addr,
        admin: String::new(),
        audit,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let (Ok(key), Ok(_)) = (
            std::fs::read_to_string(&key_file),
            TcpStream::connect(&server.addr),
        ) {
            server.admin = key;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not start within 30 s"
        );
        assert!(
            server.child.try_wait().expect("status").is_none(),
            "server exited early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The JSON-RPC messages of an SSE answer.
    fn events(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to its end.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Issues a key through the admin API; returns `(id, key)`.
fn issue(
    s: &Server,
    name: &str,
    scopes: &[&str],
    restrictions: Option<&[&str]>,
) -> (String, String) {
    let mut body = json!({ "name": name, "owner": "jason", "scopes": scopes });
    if let Some(r) = restrictions {
        body["restrictions"] = json!(r);
    }
    let auth = bearer(&s.admin);
    let r = http(
        &s.addr,
        "POST",
        "/admin/keys",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    (
        v["id"].as_str().expect("id").to_owned(),
        v["key"].as_str().expect("key").to_owned(),
    )
}

fn revoke(s: &Server, id: &str) {
    let auth = bearer(&s.admin);
    let r = http(
        &s.addr,
        "POST",
        &format!("/admin/keys/{id}/revoke"),
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The README's `mcpServers` entries, in order.
fn readme_servers() -> Vec<Value> {
    let mut entries = Vec::new();
    for block in README.split("```json\n").skip(1) {
        let Some((block, _)) = block.split_once("```") else {
            continue;
        };
        // Other JSON blocks (JSON lines of `keytool import`, say) are not client configurations.
        if !block.contains("\"mcpServers\"") {
            continue;
        }
        let doc: Value = serde_json::from_str(block).expect("README JSON blocks parse");
        if let Some(servers) = doc["mcpServers"].as_object() {
            entries.extend(servers.values().cloned());
        }
    }
    entries
}

/// The README's literal form (`Bearer <key>`), pointed at `addr`, with `key` in its headers.
fn readme_config(addr: &str, key: &str) -> (String, HashMap<String, String>) {
    let entry = readme_servers()
        .into_iter()
        .find(|e| e["headers"].to_string().contains("<key>"))
        .expect("README shows an mcpServers entry with <key>");
    let url = entry["url"].as_str().expect("url");
    let (scheme, rest) = url.split_once("://").expect("absolute url");
    let path = &rest[rest.find('/').expect("a path")..];
    assert_eq!((scheme, path), ("http", "/mcp"));
    let headers = entry["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(n, v)| {
            let value = v.as_str().expect("header value").replace("<key>", key);
            (n.clone(), value)
        })
        .collect();
    (format!("{scheme}://{addr}{path}"), headers)
}

type Client = RunningService<RoleClient, ()>;

/// Connects `rmcp`'s client as the README configures a client.
async fn connect(addr: &str, key: &str) -> Result<Client, String> {
    let (url, headers) = readme_config(addr, key);
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    let mut custom = HashMap::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            // rmcp sends `Authorization` itself, from the token after `Bearer `.
            let token = value.strip_prefix("Bearer ").expect("a Bearer header");
            config = config.auth_header(token);
        } else {
            custom.insert(
                name.parse().expect("header name"),
                value.parse().expect("header value"),
            );
        }
    }
    let transport = StreamableHttpClientTransport::from_config(config.custom_headers(custom));
    ().serve(transport).await.map_err(|e| e.to_string())
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    names
}

async fn call(
    client: &Client,
    name: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    let params = CallToolRequestParams::new(name.to_owned());
    let params = match arguments {
        Value::Object(map) => params.with_arguments(map),
        _ => params,
    };
    client.call_tool(params).await
}

/// A tool result's structured content, checked against its text content.
fn payload(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let structured = result
        .structured_content
        .clone()
        .expect("structured content");
    let text = result
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .expect("text content");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("text is JSON"),
        structured
    );
    structured
}

fn mcp_error(result: Result<CallToolResult, ServiceError>) -> rmcp::ErrorData {
    match result {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected an MCP error, got {other:?}"),
    }
}

/// The audit events the server wrote.
fn audit_events(s: &Server) -> Vec<Value> {
    std::fs::read_to_string(&s.audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_sees_the_tools_of_its_keys_scopes_and_writes_as_itself() {
    let s = start();
    let (_, read) = issue(&s, "reader", &["read"], None);
    let (write_id, write) = issue(&s, "claude-code on macbook", &["tickets:write"], None);
    let (_, narrow) = issue(&s, "narrow", &["tickets:write"], Some(&["company:4"]));

    // A read key: the handshake, list_tickets only, tickets, and a refused call.
    let reader = connect(&s.addr, &read).await.expect("handshake");
    let info = reader.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("toado")
    );
    assert_eq!(tool_names(&reader).await, ["list_tickets"]);
    let listed = payload(
        &call(&reader, "list_tickets", json!({}))
            .await
            .expect("call"),
    );
    assert_eq!(listed["tickets"].as_array().map(Vec::len), Some(3));
    let refused = mcp_error(
        call(
            &reader,
            "create_ticket",
            json!({ "title": "t", "company": "42", "project": "7" }),
        )
        .await,
    );
    assert_eq!(refused.code.0, -32602);
    assert_eq!(refused.message, "missing scope tickets:write");
    assert_eq!(
        refused.data,
        Some(json!({ "error": "insufficient_scope", "scope": "tickets:write" }))
    );
    let unknown = mcp_error(call(&reader, "drop_tables", json!({})).await);
    assert_eq!(unknown.code.0, -32602);
    reader.cancel().await.expect("close");

    // A tickets:write key: both tools, and the ticket names the key and the channel.
    let writer = connect(&s.addr, &write).await.expect("handshake");
    assert_eq!(tool_names(&writer).await, ["create_ticket", "list_tickets"]);
    let ticket = payload(
        &call(
            &writer,
            "create_ticket",
            json!({ "title": "Printer on fire again", "company": "42", "project": "7" }),
        )
        .await
        .expect("call"),
    );
    assert_eq!(
        ticket["created_by"],
        json!({ "key_id": write_id, "channel": "mcp" })
    );
    let bad = mcp_error(call(&writer, "create_ticket", json!({ "title": "no project" })).await);
    assert_eq!(bad.code.0, -32602);
    writer.cancel().await.expect("close");

    // The audit event of the creation names the key, its name and owner, and MCP.
    let target = format!("ticket:{}", ticket["id"]);
    let event = audit_events(&s)
        .into_iter()
        .find(|e| e["kind"]["type"] == "action" && e["kind"]["resource"] == target.as_str())
        .expect("an audit event for the ticket");
    assert_eq!(event["kind"]["action"], "ticket.create");
    assert_eq!(event["key_id"], write_id.as_str());
    assert_eq!(event["name"], "claude-code on macbook");
    assert_eq!(event["owner"], "jason");
    assert_eq!(event["context"]["channel"], "mcp");

    // Every ticket answer carries created_by, over HTTP too.
    let auth = bearer(&write);
    let all = http(&s.addr, "GET", "/tickets", &[("Authorization", &auth)], "").json();
    let mine = all
        .as_array()
        .expect("tickets")
        .iter()
        .find(|t| t["id"] == ticket["id"])
        .expect("the MCP ticket is listed")
        .clone();
    assert_eq!(mine["created_by"], ticket["created_by"]);
    assert!(
        all.as_array()
            .expect("tickets")
            .iter()
            .all(|t| t.get("created_by").is_some())
    );
    let by_http = http(
        &s.addr,
        "POST",
        "/tickets",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"title":"Filed by hand","company":"42","project":"8"}"#,
    );
    assert_eq!(by_http.status, 201, "{}", by_http.body);
    assert_eq!(
        by_http.json()["created_by"],
        json!({ "key_id": write_id, "channel": "http" })
    );
    assert!(
        audit_events(&s)
            .iter()
            .any(|e| e["kind"]["type"] == "action"
                && e["context"]["channel"] == "http"
                && e["key_id"] == write_id.as_str())
    );

    // Resource restrictions: a key of company 4 sees and writes only there.
    let narrow = connect(&s.addr, &narrow).await.expect("handshake");
    let seen = payload(
        &call(&narrow, "list_tickets", json!({}))
            .await
            .expect("call"),
    );
    let companies: Vec<&str> = seen["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .filter_map(|t| t["company"].as_str())
        .collect();
    assert_eq!(companies, ["4"]);
    let outside = mcp_error(
        call(
            &narrow,
            "create_ticket",
            json!({ "title": "t", "company": "42", "project": "7" }),
        )
        .await,
    );
    assert_eq!(outside.code.0, -32602);
    assert!(
        outside.message.contains("company:42/project:7"),
        "{outside:?}"
    );
    payload(
        &call(
            &narrow,
            "create_ticket",
            json!({ "title": "t", "company": "4", "project": "1" }),
        )
        .await
        .expect("inside its restrictions"),
    );
    narrow.cancel().await.expect("close");
}

/// `initialize` over plain HTTP; returns the session id.
fn open_session(s: &Server, key: &str) -> String {
    let auth = bearer(key);
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "raw", "version": "1" } }
    });
    let r = http(
        &s.addr,
        "POST",
        "/mcp",
        &mcp_headers(&auth, None),
        &init.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.events()[0]["result"]["serverInfo"]["name"], "toado");
    r.header("mcp-session-id").expect("a session id").to_owned()
}

fn mcp_headers<'a>(auth: &'a str, session: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Authorization", auth),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2025-06-18"),
    ];
    if let Some(id) = session {
        h.push(("Mcp-Session-Id", id));
    }
    h
}

fn list_in_session(s: &Server, key: &str, session: &str) -> Reply {
    let auth = bearer(key);
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    http(
        &s.addr,
        "POST",
        "/mcp",
        &mcp_headers(&auth, Some(session)),
        &list.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_belong_to_their_key_and_dead_keys_are_refused() {
    let s = start();
    let (_, alice) = issue(&s, "alice", &["read"], None);
    let (_, mallory) = issue(&s, "mallory", &["tickets:write"], None);
    let (doomed_id, doomed) = issue(&s, "doomed", &["read"], None);

    // The session answers its own key, and is unknown to any other.
    let session = open_session(&s, &alice);
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let auth = bearer(&alice);
    let r = http(
        &s.addr,
        "POST",
        "/mcp",
        &mcp_headers(&auth, Some(&session)),
        &initialized.to_string(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let mine = list_in_session(&s, &alice, &session);
    assert_eq!(mine.status, 200);
    assert_eq!(
        mine.events()[0]["result"]["tools"][0]["name"],
        "list_tickets"
    );
    let stolen = list_in_session(&s, &mallory, &session);
    let made_up = list_in_session(&s, &mallory, "5f0e6c4e-0000-4000-8000-000000000000");
    assert_eq!(
        (stolen.status, stolen.body.as_str()),
        (404, made_up.body.as_str())
    );
    assert_eq!(made_up.status, 404);

    // Every request and writes charge the key's budget (RateLimit-* on MCP answers).
    assert!(mine.header("ratelimit-limit").is_some());

    // No key, an unknown key, a revoked key: 401 with the challenge, as on every route.
    let none = http(&s.addr, "POST", "/mcp", &mcp_headers("", None)[1..], "{}");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"toado\"")
    );
    let unknown = list_in_session(
        &s,
        "tak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &session,
    );
    assert_eq!(unknown.status, 401);
    let doomed_client = connect(&s.addr, &doomed).await.expect("handshake");
    payload(
        &call(&doomed_client, "list_tickets", json!({}))
            .await
            .expect("alive"),
    );
    revoke(&s, &doomed_id);
    // Its next request, within the session, is refused; it cannot connect again.
    assert!(
        call(&doomed_client, "list_tickets", json!({}))
            .await
            .is_err()
    );
    assert!(connect(&s.addr, &doomed).await.is_err());
    let raw = list_in_session(&s, &doomed, &session);
    assert_eq!(raw.status, 401);
    assert!(
        raw.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm=\"toado\", error=\"invalid_token\"")),
        "{:?}",
        raw.headers
    );
    let _ = doomed_client.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writing_tool_call_spends_the_write_budget() {
    let s = start();
    let (_, write) = issue(&s, "w", &["tickets:write"], None);
    let session = open_session(&s, &write);
    let auth = bearer(&write);
    let create = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "create_ticket", "arguments": { "title": "t", "company": "42", "project": "7" } } });
    let r = http(
        &s.addr,
        "POST",
        "/mcp",
        &mcp_headers(&auth, Some(&session)),
        &create.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("ratelimit-limit"),
        Some("60"),
        "writes: 60 a minute"
    );
    let listed = list_in_session(&s, &write, &session);
    assert_eq!(
        listed.header("ratelimit-limit"),
        Some("600"),
        "reads: 600 a minute"
    );
}

#[test]
fn live_python_sdk() {
    if std::env::var_os("KEYWARD_TEST_INTEROP").is_none() {
        eprintln!("skipped: set KEYWARD_TEST_INTEROP=1 (needs python3 with `pip install mcp`)");
        return;
    }
    let s = start();
    let (_, read) = issue(&s, "reader", &["read"], None);
    let (write_id, write) = issue(&s, "cursor on desktop", &["tickets:write"], None);
    let (_, doomed) = issue(&s, "doomed", &["read"], None);
    let out = Command::new("python3")
        .arg("tests/mcp_client.py")
        .arg("README.md")
        .arg(&s.addr)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TOADO_READ_KEY", &read)
        .env("TOADO_WRITE_KEY", &write)
        .env("TOADO_DOOMED_KEY", &doomed)
        .env("TOADO_ADMIN_KEY", &s.admin)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "tests/mcp_client.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a summary line");
    let ticket = &summary["ticket"];
    assert_eq!(
        ticket["created_by"],
        json!({ "key_id": write_id, "channel": "mcp" })
    );
    let target = format!("ticket:{}", ticket["id"]);
    let event = audit_events(&s)
        .into_iter()
        .find(|e| e["kind"]["type"] == "action" && e["kind"]["resource"] == target.as_str())
        .expect("an audit event for the ticket");
    assert_eq!(
        (
            &event["key_id"],
            &event["name"],
            &event["context"]["channel"]
        ),
        (&json!(write_id), &json!("cursor on desktop"), &json!("mcp"))
    );
}
