//! End to end: starts `examples/server.rs` on loopback exactly as outside tests do
//! (`KEYWARD_ADDR`, `KEYWARD_ADMIN_KEY_FILE`) and drives every route and error over real
//! HTTP/1.1 connections.
//!
//! Like `tests/keytool.rs`, the example is built with the `cargo` running this test and its
//! path taken from cargo's JSON report.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

fn server_path() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            "server",
            "--features",
            "axum,rate-limit,secret-scanning,sqlite",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the server failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the server executable")
}

struct Server {
    child: Child,
    addr: String,
    admin: String,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start() -> Server {
    start_with(&[])
}

/// Starts the server with extra environment variables.
fn start_with(env: &[(&str, &str)]) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("keyward-e2e-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key_file = dir.join("admin.key");
    let scanning_keys = dir.join("scanning-keys.json");
    let keys = json!({ "public_keys": [{ "key_identifier": SCANNER_KEY_ID, "key": scanner_pem(), "is_current": true }] });
    std::fs::write(&scanning_keys, keys.to_string()).expect("scanning keys file");
    let child = Command::new(server_path())
        .env("KEYWARD_ADDR", &addr)
        .env("KEYWARD_ADMIN_KEY_FILE", &key_file)
        .env("KEYWARD_SCANNING_KEYS_FILE", &scanning_keys)
        .env(
            "KEYWARD_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("keys.db").display()),
        )
        .env_remove("KEYWARD_PEPPER")
        .env_remove("KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut server = Server {
        child,
        addr,
        admin: String::new(),
        _dir: TempDir(dir),
    };
    // The key file is written before the server listens; wait for both (bounded).
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
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "admin key file must be private");
    }
    server
}

const SCANNER_KEY_ID: &str = "local-scanner-key";

/// A P-256 key standing in for GitHub's signing key.
fn scanner() -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[0] = 0x01;
    bytes[31] = 0x42;
    SigningKey::from_slice(&bytes).expect("valid scalar")
}

/// Its SubjectPublicKeyInfo PEM: the fixed DER prefix of a P-256 SPKI, then the point.
fn scanner_pem() -> String {
    const SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(scanner().verifying_key().to_sec1_point(false).as_bytes());
    let b64 = Base64::encode_string(&der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn signed_report(body: &str) -> Vec<String> {
    let signature: Signature = scanner().sign(body.as_bytes());
    vec![
        format!("Github-Public-Key-Identifier: {SCANNER_KEY_ID}"),
        format!(
            "Github-Public-Key-Signature: {}",
            Base64::encode_string(signature.to_der().as_bytes())
        ),
    ]
}

/// Sends a raw body (not re-serialized: the signature covers these exact bytes).
fn post_raw(server: &Server, path: &str, headers: &[String], body: &str) -> Reply {
    let mut all = headers.to_vec();
    all.push("Content-Type: application/json".into());
    all.push(format!("Content-Length: {}", body.len()));
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr
    );
    for h in &all {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    parse_reply(&raw)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    raw: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection. `headers` are raw `Name: value` lines.
fn http(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&Value>,
) -> Reply {
    http_at(server, &server.addr, method, path, headers, body)
}

/// As [`http`], with `host` as the `Host` header.
fn http_at(
    server: &Server,
    host: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&Value>,
) -> Reply {
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if body.is_some() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    parse_reply(&raw)
}

fn parse_reply(raw: &str) -> Reply {
    let (head, rest) = raw.split_once("\r\n\r\n").expect("http response");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let text = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw: text,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn bearer(key: &str) -> Vec<String> {
    vec![format!("Authorization: Bearer {key}")]
}

fn issue(server: &Server, body: Value) -> (String, String) {
    let r = http(
        server,
        "POST",
        "/admin/keys",
        &bearer(&server.admin),
        Some(&body),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    for field in ["id", "key", "preview", "expires_at"] {
        assert!(r.body.get(field).is_some(), "missing {field}: {}", r.raw);
    }
    (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["key"].as_str().expect("key").to_owned(),
    )
}

#[test]
fn the_example_service_end_to_end() {
    let s = start();

    // No credentials, other schemes, malformed headers, bad tokens.
    let r = http(&s, "GET", "/tickets", &[], None);
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some(r#"Bearer realm="toado""#))
    );
    assert_eq!(r.body["error"], "unauthorized");
    let r = http(
        &s,
        "GET",
        "/tickets",
        &["Authorization: Basic dXNlcjpwYXNz".into()],
        None,
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let r = http(
        &s,
        "GET",
        "/tickets",
        &[
            format!("Authorization: Bearer {}", s.admin),
            format!("Authorization: Bearer {}", s.admin),
        ],
        None,
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = http(
        &s,
        "GET",
        "/tickets",
        &["Authorization: Bearer".into()],
        None,
    );
    assert_eq!(r.status, 400);
    let r = http(&s, "GET", "/tickets", &bearer("tak_notakeyatall"), None);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains(r#"error="invalid_token""#))
    );

    // The management key works everywhere.
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&s.admin), None).status,
        200
    );

    // A commenter: `comments` includes `read`, not `tickets:write` or `tickets:assign`.
    let (a_id, a) = issue(
        &s,
        json!({ "name": "commenter", "owner": "alice", "scopes": ["comments"] }),
    );
    let r = http(&s, "GET", "/tickets", &bearer(&a), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(3));
    let r = http(
        &s,
        "POST",
        "/tickets",
        &bearer(&a),
        Some(&json!({ "title": "x", "company": "42", "project": "7" })),
    );
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains(r#"scope="tickets:write""#)),
        "{:?}",
        r.headers
    );
    assert_eq!(
        http(
            &s,
            "POST",
            "/tickets/1/comments",
            &bearer(&a),
            Some(&json!({ "body": "on it" }))
        )
        .status,
        200
    );
    assert_eq!(
        http(
            &s,
            "POST",
            "/tickets/1/assign",
            &bearer(&a),
            Some(&json!({ "assignee": "bob" }))
        )
        .status,
        403
    );
    // Not an admin.
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&a),
        Some(&json!({ "name": "x", "owner": "a", "scopes": ["read"] })),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // A writer can create tickets.
    let (_, w) = issue(
        &s,
        json!({ "name": "writer", "owner": "wes", "scopes": ["tickets:write"], "expires_in_days": 30 }),
    );
    let r = http(
        &s,
        "POST",
        "/tickets",
        &bearer(&w),
        Some(&json!({ "title": "New", "company": "42", "project": "7" })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);

    // A key restricted to company 42 sees and touches only its rows.
    let (_, b) = issue(
        &s,
        json!({ "name": "assigner", "owner": "bea", "scopes": ["tickets:assign"], "restrictions": ["company:42"] }),
    );
    let r = http(&s, "GET", "/tickets", &bearer(&b), None);
    let rows = r.body.as_array().expect("list");
    assert!(
        !rows.is_empty() && rows.iter().all(|t| t["company"] == "42"),
        "{}",
        r.raw
    );
    assert_eq!(
        http(
            &s,
            "GET",
            "/companies/42/projects/7/tickets",
            &bearer(&b),
            None
        )
        .status,
        200
    );
    let r = http(
        &s,
        "GET",
        "/companies/4/projects/1/tickets",
        &bearer(&b),
        None,
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert_eq!(
        http(
            &s,
            "POST",
            "/tickets/1/assign",
            &bearer(&b),
            Some(&json!({ "assignee": "bea" }))
        )
        .status,
        200
    );
    assert_eq!(
        http(
            &s,
            "POST",
            "/tickets/3/assign",
            &bearer(&b),
            Some(&json!({ "assignee": "bea" }))
        )
        .status,
        403
    );

    // Issuance never widens: a sub-admin cannot grant what it lacks.
    let (_, sub) = issue(
        &s,
        json!({ "name": "sub-admin", "owner": "ops", "scopes": ["keys:manage", "read"] }),
    );
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&sub),
        Some(&json!({ "name": "x", "owner": "o", "scopes": ["tickets:write"] })),
    );
    assert_eq!(r.status, 403, "{}", r.raw);
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&sub),
        Some(&json!({ "name": "x", "owner": "o", "scopes": ["read"] })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);

    // Listing has no secrets.
    let r = http(
        &s,
        "GET",
        "/admin/keys?owner=alice",
        &bearer(&s.admin),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert!(
        !r.raw.contains(&a[4..]) && r.body[0].get("key").is_none(),
        "{}",
        r.raw
    );

    // Disable, enable, rotate, revoke, delete.
    assert_eq!(
        http(
            &s,
            "POST",
            &format!("/admin/keys/{a_id}/disable"),
            &bearer(&s.admin),
            None
        )
        .status,
        200
    );
    let r = http(&s, "GET", "/tickets", &bearer(&a), None);
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("key is disabled"))
    );
    assert_eq!(
        http(
            &s,
            "POST",
            &format!("/admin/keys/{a_id}/enable"),
            &bearer(&s.admin),
            None
        )
        .status,
        200
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&a), None).status,
        200,
        "same value works again"
    );
    let r = http(
        &s,
        "POST",
        &format!("/admin/keys/{a_id}/rotate"),
        &bearer(&s.admin),
        Some(&json!({ "grace_seconds": 0 })),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    let (a2_id, a2) = (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["key"].as_str().expect("key").to_owned(),
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&a), None).status,
        401,
        "regenerated: old value refused"
    );
    assert_eq!(http(&s, "GET", "/tickets", &bearer(&a2), None).status, 200);
    assert_eq!(
        http(
            &s,
            "POST",
            &format!("/admin/keys/{a2_id}/revoke"),
            &bearer(&s.admin),
            None
        )
        .status,
        200
    );
    let r = http(&s, "GET", "/tickets", &bearer(&a2), None);
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("key is revoked"))
    );
    assert_eq!(
        http(
            &s,
            "POST",
            &format!("/admin/keys/{a2_id}/enable"),
            &bearer(&s.admin),
            None
        )
        .status,
        409
    );
    assert_eq!(
        http(
            &s,
            "DELETE",
            &format!("/admin/keys/{a2_id}"),
            &bearer(&s.admin),
            None
        )
        .status,
        204
    );
    assert_eq!(
        http(
            &s,
            "DELETE",
            &format!("/admin/keys/{a2_id}"),
            &bearer(&s.admin),
            None
        )
        .status,
        404
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&a2), None).body["message"],
        "invalid key"
    );

    // Automated login: a session cookie that lives no longer than its key.
    let (c_id, c) = issue(
        &s,
        json!({ "name": "playwright", "owner": "qa", "scopes": ["read"] }),
    );
    let r = http(&s, "POST", "/api/auth/automated-login", &bearer(&c), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    let cookie = r.header("set-cookie").expect("cookie").to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains(&c[4..]),
        "the cookie must not hold the key"
    );
    let session = format!("Cookie: {}", cookie.split(';').next().expect("pair"));
    assert_eq!(
        http(&s, "GET", "/tickets", std::slice::from_ref(&session), None).status,
        200
    );
    assert_eq!(
        http(
            &s,
            "GET",
            "/admin/keys",
            std::slice::from_ref(&session),
            None
        )
        .status,
        401,
        "sessions never authorize /admin"
    );
    assert_eq!(
        http(
            &s,
            "GET",
            "/tickets",
            &["Cookie: session=forged".into()],
            None
        )
        .status,
        401
    );
    assert_eq!(
        http(
            &s,
            "POST",
            &format!("/admin/keys/{c_id}/disable"),
            &bearer(&s.admin),
            None
        )
        .status,
        200
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &[session], None).status,
        401,
        "a disabled key ends its sessions"
    );

    // Secret scanning: a signed report revokes a genuine key at once; a wrong secret or a
    // foreign token changes nothing; an unsigned report is refused.
    let (_, leaked) = issue(
        &s,
        json!({ "name": "ci", "owner": "dev", "scopes": ["read"] }),
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&leaked), None).status,
        200
    );
    let report = json!([
        { "token": leaked, "type": "keyward_key", "url": "https://github.com/acme/app/blob/main/.env", "source": "commit" },
        { "token": "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", "type": "github", "url": "", "source": "commit" }
    ])
    .to_string();
    let r = post_raw(
        &s,
        "/secret-scanning/github",
        &signed_report(&report),
        &report,
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    let labels: Vec<&str> = r
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v["label"].as_str())
        .collect();
    assert_eq!(labels, ["true_positive", "false_positive"]);
    assert!(
        !r.raw.contains(&leaked),
        "the answer must not repeat the token"
    );
    let refused = http(&s, "GET", "/tickets", &bearer(&leaked), None);
    assert_eq!(
        (refused.status, refused.body["message"].as_str()),
        (401, Some("key is revoked"))
    );
    let r = post_raw(&s, "/secret-scanning/github", &[], &report);
    assert_eq!(r.status, 401, "unsigned reports are refused: {}", r.raw);
    let mut tampered = signed_report(&report);
    // Change one base64 character in the middle of the signature to a different one (the
    // last character may be padding, and a fixed replacement could equal the original).
    let middle = tampered[1].len() - 20;
    let replacement = if &tampered[1][middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    tampered[1].replace_range(middle..=middle, replacement);
    assert_eq!(
        post_raw(&s, "/secret-scanning/github", &tampered, &report).status,
        401
    );

    // MCP over the Bearer key (tests/mcp.rs drives it with real MCP clients).
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": { "name": "e2e", "version": "1" } } });
    let mut headers = bearer(&w);
    headers.push("Accept: application/json, text/event-stream".into());
    let r = http(&s, "POST", "/mcp", &headers, Some(&call));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.header("mcp-session-id").is_some());
    assert!(
        r.raw.contains(r#""serverInfo":{"name":"toado""#),
        "{}",
        r.raw
    );
    assert_eq!(http(&s, "POST", "/mcp", &[], Some(&call)).status, 401);
}

/// The management key's id, from the admin listing.
fn admin_id(s: &Server) -> String {
    let r = http(s, "GET", "/admin/keys?owner=admin", &bearer(&s.admin), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    r.body[0]["id"].as_str().expect("admin id").to_owned()
}

/// The listing `key` gets from `GET /admin/keys`.
fn listing(s: &Server, key: &str) -> Vec<Value> {
    let r = http(s, "GET", "/admin/keys", &bearer(key), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    r.body.as_array().expect("array").clone()
}

/// The record of `id` as the management key lists it.
fn record(s: &Server, id: &str) -> Value {
    listing(s, &s.admin)
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} is listed"))
}

/// Trades `key` for a session cookie; returns the `Cookie:` header line.
fn login(s: &Server, key: &str) -> String {
    let r = http(s, "POST", "/api/auth/automated-login", &bearer(key), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    let cookie = r.header("set-cookie").expect("cookie");
    format!("Cookie: {}", cookie.split(';').next().expect("pair"))
}

#[test]
fn admin_routes_act_within_the_callers_reach_and_answer_404_outside_it() {
    let s = start();
    let admin = admin_id(&s);
    let (other_id, other) = issue(
        &s,
        json!({ "name": "reader", "owner": "rita", "scopes": ["read"] }),
    );
    // Only keys:manage, restricted to company 42, living one day.
    let (helpdesk_id, helpdesk) = issue(
        &s,
        json!({ "name": "helpdesk", "owner": "ops", "scopes": ["keys:manage"],
                "restrictions": ["company:42"], "expires_in_days": 1 }),
    );
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&helpdesk),
        Some(&json!({ "name": "sub", "owner": "ops", "scopes": ["keys:manage"] })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    let sub_id = r.body["id"].as_str().expect("id").to_owned();

    // The listing holds what it reaches: itself and what it issued, not the `*` key nor an
    // unrestricted reader.
    let listed = listing(&s, &helpdesk);
    let mut ids: Vec<&str> = listed.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![helpdesk_id.as_str(), sub_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{listed:?}");
    for r in &listed {
        assert!(
            r.get("parent").is_some_and(Value::is_null),
            "parent field: {r}"
        );
        assert!(r.get("tenant").is_some(), "tenant field: {r}");
    }
    assert!(
        listing(&s, &s.admin)
            .iter()
            .any(|r| r["id"] == admin.as_str())
    );

    // An unknown (well-formed) id, for comparison.
    let unknown = "ZZZZZZZZZZZZ";
    let r = http(
        &s,
        "POST",
        &format!("/admin/keys/{unknown}/revoke"),
        &bearer(&helpdesk),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.raw);
    let unknown_body = r.body.clone();
    assert_eq!(unknown_body["error"], "not_found");
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };

    let out_of_reach: [(&str, String, Option<Value>); 5] = [
        (
            "POST",
            format!("/admin/keys/{admin}/rotate"),
            Some(json!({ "grace_seconds": 0 })),
        ),
        ("POST", format!("/admin/keys/{admin}/disable"), None),
        ("POST", format!("/admin/keys/{admin}/enable"), None),
        ("POST", format!("/admin/keys/{admin}/revoke"), None),
        ("DELETE", format!("/admin/keys/{admin}"), None),
    ];
    for (method, path, body) in &out_of_reach {
        let r = http(&s, method, path, &bearer(&helpdesk), body.as_ref());
        assert_eq!(r.status, 404, "{method} {path}: {}", r.raw);
        assert_eq!(shape(&r.body), shape(&unknown_body), "{}", r.raw);
        assert_eq!(r.body["error"], "not_found");
        assert_eq!(
            r.body["message"].as_str(),
            unknown_body["message"]
                .as_str()
                .map(|m| m.replace(unknown, &admin))
                .as_deref(),
            "the same answer as for an unknown id"
        );
        // Nothing changed: the management key still works and is still active.
        assert_eq!(
            http(&s, "GET", "/tickets", &bearer(&s.admin), None).status,
            200,
            "after {method} {path}"
        );
        assert_eq!(record(&s, &admin)["status"], "active");
    }

    // An unrestricted reader is out of reach too (wider resources).
    let r = http(
        &s,
        "POST",
        &format!("/admin/keys/{other_id}/revoke"),
        &bearer(&helpdesk),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.raw);
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&other), None).status,
        200
    );

    // What it reaches, it manages.
    let r = http(
        &s,
        "POST",
        &format!("/admin/keys/{sub_id}/disable"),
        &bearer(&helpdesk),
        None,
    );
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("disabled")),
        "{}",
        r.raw
    );
}

#[test]
fn admin_issuance_keeps_the_callers_tenant_and_lifetime_and_refuses_out_of_range_fields() {
    let s = start();
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&s.admin),
        Some(
            &json!({ "name": "acme-admin", "owner": "acme-ops", "tenant": "acme",
                      "scopes": ["keys:manage", "read"], "expires_in_days": 1 }),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    let (acme_id, acme) = (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["key"].as_str().expect("key").to_owned(),
    );
    let acme_end = r.body["expires_at"].as_i64().expect("expires");
    assert_eq!(record(&s, &acme_id)["tenant"], "acme");

    // Another tenant: refused.
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&acme),
        Some(&json!({ "name": "x", "owner": "o", "scopes": ["read"], "tenant": "globex" })),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{}",
        r.raw
    );
    // None named: the caller's, and no later than the caller's end.
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&acme),
        Some(&json!({ "name": "x", "owner": "o", "scopes": ["read"] })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    let child = r.body["id"].as_str().expect("id").to_owned();
    assert!(
        r.body["expires_at"]
            .as_i64()
            .is_some_and(|at| at <= acme_end),
        "{}",
        r.raw
    );
    let listed = record(&s, &child);
    assert_eq!(listed["tenant"], "acme", "{listed}");
    assert!(
        listed["parent"].is_null(),
        "administrative issuance is not delegation"
    );
    // Its own tenant, named: fine.
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&acme),
        Some(&json!({ "name": "y", "owner": "o", "scopes": ["read"], "tenant": "acme" })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    // A caller without a tenant and without `*` cannot name one either.
    let (_, plain) = issue(
        &s,
        json!({ "name": "plain-admin", "owner": "ops", "scopes": ["keys:manage", "read"] }),
    );
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&plain),
        Some(&json!({ "name": "z", "owner": "o", "scopes": ["read"], "tenant": "acme" })),
    );
    assert_eq!(r.status, 403, "{}", r.raw);

    // An explicit expiry past the caller's end.
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&acme),
        Some(&json!({ "name": "x", "owner": "o", "scopes": ["read"], "expires_in_days": 2 })),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("invalid_request")),
        "{}",
        r.raw
    );

    // Out-of-range days: a 400, never a dropped connection.
    for days in [
        json!(i64::MAX),
        json!(-5),
        json!(0),
        json!(i64::MIN),
        json!(1e300),
    ] {
        for caller in [&s.admin, &acme] {
            let r = http(
                &s,
                "POST",
                "/admin/keys",
                &bearer(caller),
                Some(
                    &json!({ "name": "x", "owner": "o", "scopes": ["read"], "expires_in_days": days }),
                ),
            );
            assert_eq!(
                (r.status, r.body["error"].as_str()),
                (400, Some("invalid_request")),
                "expires_in_days {days}: {}",
                r.raw
            );
        }
    }
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&s.admin), None).status,
        200,
        "the server is still up"
    );
}

#[test]
fn delegated_keys_are_never_wider_and_die_with_their_parent() {
    let s = start();
    let (parent_id, parent) = issue(
        &s,
        json!({ "name": "agent", "owner": "dana", "scopes": ["keys:delegate", "read"] }),
    );
    let r = http(
        &s,
        "POST",
        "/api/keys/delegate",
        &bearer(&parent),
        Some(&json!({ "name": "ci-child", "scopes": ["read"], "expires_in_days": 7 })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    for field in ["id", "key", "preview", "expires_at", "parent"] {
        assert!(r.body.get(field).is_some(), "missing {field}: {}", r.raw);
    }
    assert_eq!(r.body["parent"], parent_id.as_str());
    let (child_id, child) = (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["key"].as_str().expect("key").to_owned(),
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&child), None).status,
        200
    );
    let listed = record(&s, &child_id);
    assert_eq!(
        (listed["parent"].as_str(), listed["owner"].as_str()),
        (Some(parent_id.as_str()), Some("dana")),
        "{listed}"
    );

    // Never wider than the caller.
    let r = http(
        &s,
        "POST",
        "/api/keys/delegate",
        &bearer(&parent),
        Some(&json!({ "name": "wide", "scopes": ["tickets:write"] })),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{}",
        r.raw
    );
    // keys:delegate is its own scope: the child (read only) may not delegate, whatever it sends.
    let r = http(
        &s,
        "POST",
        "/api/keys/delegate",
        &bearer(&child),
        Some(&json!({ "name": "grandchild", "scopes": ["read"] })),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{}",
        r.raw
    );
    let r = post_raw(&s, "/api/keys/delegate", &bearer(&child), "{oops");
    assert_eq!(r.status, 403, "{}", r.raw);
    assert_eq!(
        http(&s, "POST", "/api/keys/delegate", &[], Some(&json!({}))).status,
        401
    );

    // The parent disabled: the child is refused from the next request; enabled: back.
    let path = |action: &str| format!("/admin/keys/{parent_id}/{action}");
    assert_eq!(
        http(&s, "POST", &path("disable"), &bearer(&s.admin), None).status,
        200
    );
    let r = http(&s, "GET", "/tickets", &bearer(&child), None);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid_token")),
        "{}",
        r.raw
    );
    assert_eq!(
        http(&s, "POST", &path("enable"), &bearer(&s.admin), None).status,
        200
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&child), None).status,
        200
    );
    // Revoked: for good.
    assert_eq!(
        http(&s, "POST", &path("revoke"), &bearer(&s.admin), None).status,
        200
    );
    let r = http(&s, "GET", "/tickets", &bearer(&child), None);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid_token")),
        "{}",
        r.raw
    );
    let r = http(
        &s,
        "POST",
        "/api/keys/delegate",
        &bearer(&parent),
        Some(&json!({ "name": "late", "scopes": ["read"] })),
    );
    assert_eq!(r.status, 401, "{}", r.raw);
}

#[test]
fn failed_verifications_on_ticket_routes_are_throttled_per_client() {
    let s = start_with(&[("KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE", "3")]);
    let statuses: Vec<u16> = (0..5)
        .map(|_| http(&s, "GET", "/tickets", &bearer("tak_notakeyatall"), None).status)
        .collect();
    assert_eq!(&statuses[..3], [401, 401, 401], "{statuses:?}");
    assert_eq!(statuses[4], 429, "{statuses:?}");
    let r = http(&s, "GET", "/tickets", &bearer("tak_notakeyatall"), None);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        r.raw
    );
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|secs| secs >= 1),
        "{:?}",
        r.headers
    );
    // While blocked, even a valid key or a session from that client is not looked up.
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&s.admin), None).status,
        429
    );
    assert_eq!(
        http(
            &s,
            "POST",
            "/tickets",
            &["Cookie: session=guess".into()],
            Some(&json!({ "title": "t", "company": "42", "project": "7" }))
        )
        .status,
        429
    );
    // The same throttle guards the Bearer-only routes.
    assert_eq!(
        http(&s, "GET", "/admin/keys", &bearer(&s.admin), None).status,
        429
    );
}

#[test]
fn session_guesses_count_as_failed_verifications() {
    let s = start_with(&[("KEYWARD_FAILED_VERIFICATIONS_PER_MINUTE", "2")]);
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            http(
                &s,
                "GET",
                "/tickets",
                &[format!("Cookie: session=guess{i}")],
                None,
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [401, 401, 401, 429]);
}

#[test]
fn a_key_without_the_routes_scope_gets_403_before_its_body_is_read() {
    let s = start();
    let (_, reader) = issue(
        &s,
        json!({ "name": "reader", "owner": "rita", "scopes": ["read"] }),
    );
    for body in ["{not json", "{}", r#"{"title": 5}"#, ""] {
        for path in ["/tickets", "/tickets/1/comments", "/tickets/1/assign"] {
            let r = post_raw(&s, path, &bearer(&reader), body);
            assert_eq!(
                (r.status, r.body["error"].as_str()),
                (403, Some("insufficient_scope")),
                "POST {path} {body:?}: {}",
                r.raw
            );
        }
    }
    // Also for an unknown ticket and a path that is not a ticket id.
    let r = post_raw(&s, "/tickets/999/assign", &bearer(&reader), "{");
    assert_eq!(r.status, 403, "{}", r.raw);
    let r = post_raw(&s, "/tickets/abc/comments", &bearer(&reader), "{");
    assert_eq!(r.status, 403, "{}", r.raw);
    // A key that holds the scope still gets the body's error.
    let (_, writer) = issue(
        &s,
        json!({ "name": "writer", "owner": "wes", "scopes": ["tickets:write"] }),
    );
    let r = post_raw(&s, "/tickets", &bearer(&writer), "{not json");
    assert!(matches!(r.status, 400 | 422), "{} {}", r.status, r.raw);
    let r = post_raw(&s, "/tickets", &bearer(&writer), "{}");
    assert!(matches!(r.status, 400 | 422), "{} {}", r.status, r.raw);
    let r = post_raw(
        &s,
        "/tickets/1/comments",
        &bearer(&writer),
        r#"{"body": "ok"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.raw);
}

#[test]
fn sessions_are_capped_per_key_and_purged_when_their_key_dies() {
    let s = start();
    let (key_id, key) = issue(
        &s,
        json!({ "name": "playwright", "owner": "qa", "scopes": ["read"] }),
    );
    let mut cookies: Vec<String> = (0..17).map(|_| login(&s, &key)).collect();
    let get = |cookie: &String| http(&s, "GET", "/tickets", std::slice::from_ref(cookie), None);
    // The 17th session pushed out the oldest.
    assert_eq!(get(&cookies[0]).status, 401, "oldest session dropped");
    for (i, c) in cookies.iter().enumerate().skip(1) {
        assert_eq!(get(c).status, 200, "session {i}");
    }
    cookies.push(login(&s, &key));
    assert_eq!(get(&cookies[1]).status, 401, "next oldest dropped");
    assert_eq!(get(&cookies[2]).status, 200);
    assert_eq!(get(&cookies[17]).status, 200);
    // Another key's sessions are its own.
    let (_, other) = issue(
        &s,
        json!({ "name": "other", "owner": "qa", "scopes": ["read"] }),
    );
    let other_session = login(&s, &other);

    // Revoked: every session of the key is gone (401, and the session is no longer known).
    assert_eq!(
        http(
            &s,
            "POST",
            &format!("/admin/keys/{key_id}/revoke"),
            &bearer(&s.admin),
            None
        )
        .status,
        200
    );
    let r = get(&cookies[17]);
    assert_eq!(r.status, 401, "{}", r.raw);
    let r = get(&cookies[17]);
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("invalid key")),
        "purged: {}",
        r.raw
    );
    assert_eq!(get(&cookies[2]).body["message"], "invalid key");
    assert_eq!(get(&other_session).status, 200);
}

#[test]
fn a_dead_keys_session_is_purged_on_its_next_use() {
    let s = start();
    let (parent_id, parent) = issue(
        &s,
        json!({ "name": "agent", "owner": "dana", "scopes": ["keys:delegate", "read"] }),
    );
    let r = http(
        &s,
        "POST",
        "/api/keys/delegate",
        &bearer(&parent),
        Some(&json!({ "name": "browser", "scopes": ["read"] })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    let child = r.body["key"].as_str().expect("key").to_owned();
    let session = login(&s, &child);
    let get = || http(&s, "GET", "/tickets", std::slice::from_ref(&session), None);
    assert_eq!(get().status, 200);
    // The parent dies: the child's session is refused (its key no longer verifies), then
    // forgotten.
    assert_eq!(
        http(
            &s,
            "POST",
            &format!("/admin/keys/{parent_id}/revoke"),
            &bearer(&s.admin),
            None
        )
        .status,
        200
    );
    let r = get();
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("key is revoked")),
        "{}",
        r.raw
    );
    let r = get();
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("invalid key")),
        "purged: {}",
        r.raw
    );
}

#[test]
fn the_scope_catalog_describes_every_scope_with_what_it_includes() {
    let s = start();
    let r = http(&s, "GET", "/admin/scopes", &bearer(&s.admin), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    let scopes = r.body["scopes"].as_array().expect("scopes");
    assert!(scopes.len() >= 6, "{}", r.raw);
    for scope in scopes {
        let description = scope["description"].as_str().unwrap_or_default();
        assert!(!description.is_empty(), "undescribed scope: {scope}");
        assert!(scope["includes"].is_array(), "{scope}");
    }
    let write = scopes
        .iter()
        .find(|s| s["name"] == "tickets:write")
        .expect("tickets:write");
    let includes: Vec<&str> = write["includes"]
        .as_array()
        .expect("includes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        includes.contains(&"comments") && includes.contains(&"read"),
        "{write}"
    );
    assert!(r.body["roles"].is_array(), "{}", r.raw);
    // Managing keys is needed to read it.
    let (_, reader) = issue(&s, json!({ "name": "r", "owner": "u", "scopes": ["read"] }));
    let r = http(&s, "GET", "/admin/scopes", &bearer(&reader), None);
    assert_eq!(r.status, 403, "{}", r.raw);
}

#[test]
fn calendar_month_expiry_and_its_default() {
    let s = start();
    let now = unix_now();
    let issue_with = |extra: Value| {
        let mut body = json!({ "name": "m", "owner": "u", "scopes": ["read"] });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        http(&s, "POST", "/admin/keys", &bearer(&s.admin), Some(&body))
    };
    for (months, min_days, max_days) in [(1, 28, 31), (3, 89, 92), (6, 181, 184)] {
        let r = issue_with(json!({ "expires_in_months": months }));
        assert_eq!(r.status, 201, "{}", r.raw);
        let days = (r.body["expires_at"].as_i64().expect("expiry") - now) / 86_400;
        assert!(
            (min_days..=max_days).contains(&days),
            "{months} months: {days} days"
        );
    }
    // The default is three calendar months.
    let r = issue_with(json!({}));
    assert_eq!(r.status, 201, "{}", r.raw);
    let days = (r.body["expires_at"].as_i64().expect("expiry") - now) / 86_400;
    assert!((89..=92).contains(&days), "default: {days} days");
    for bad in [
        json!({ "expires_in_months": 2 }),
        json!({ "expires_in_months": 0 }),
        json!({ "expires_in_months": 12 }),
        json!({ "expires_in_months": "3" }),
        json!({ "expires_in_months": 3, "expires_in_days": 30 }),
    ] {
        let r = issue_with(bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.raw);
    }
}

/// Seconds since the epoch, for comparing with `expires_at`.
fn unix_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    i64::try_from(since.as_secs()).expect("fits")
}

#[test]
fn ip_allowlists_refuse_other_networks_with_403() {
    let s = start();
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&s.admin),
        Some(
            &json!({ "name": "office", "owner": "u", "scopes": ["read"], "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"] }),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    let (office_id, office) = (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["key"].as_str().expect("key").to_owned(),
    );
    let r = http(&s, "GET", "/tickets", &bearer(&office), None);
    assert_eq!(r.status, 403, "{}", r.raw);
    assert_eq!(r.body["error"], "ip_not_allowed", "{}", r.raw);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("10.0.0.0") && !message.contains("2001:db8"),
        "the list leaks: {message}"
    );
    assert_eq!(
        record(&s, &office_id)["allowed_ips"],
        json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    // Loopback allowed: the key works.
    let (_, local) = issue(
        &s,
        json!({ "name": "local", "owner": "u", "scopes": ["read"], "allowed_ips": ["127.0.0.1"] }),
    );
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&local), None).status,
        200
    );
    // A malformed CIDR is a 400.
    for bad in [json!(["10.0.0.0/33"]), json!(["nonsense"]), json!([])] {
        let r = http(
            &s,
            "POST",
            "/admin/keys",
            &bearer(&s.admin),
            Some(&json!({ "name": "x", "owner": "u", "scopes": ["read"], "allowed_ips": bad })),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.raw);
    }
    // Editing the list in place lets the key in, on its next request.
    let r = http(
        &s,
        "PATCH",
        &format!("/admin/keys/{office_id}"),
        &bearer(&s.admin),
        Some(&json!({ "allowed_ips": ["127.0.0.0/8"] })),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        http(&s, "GET", "/tickets", &bearer(&office), None).status,
        200
    );
}

#[test]
fn editing_a_live_key_is_bounded_by_the_caller_and_effective_at_once() {
    let s = start();
    let (id, key) = issue(
        &s,
        json!({ "name": "bot", "owner": "u", "scopes": ["tickets:write"] }),
    );
    let create = json!({ "title": "t", "company": "42", "project": "7" });
    assert_eq!(
        http(&s, "POST", "/tickets", &bearer(&key), Some(&create)).status,
        201
    );
    let r = http(
        &s,
        "PATCH",
        &format!("/admin/keys/{id}"),
        &bearer(&s.admin),
        Some(
            &json!({ "name": "bot (read only)", "scopes": ["read"], "restrictions": ["company:42"] }),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["name"], "bot (read only)");
    assert_eq!(r.body["scopes"], json!(["read"]));
    assert_eq!(r.body["restrictions"], json!(["company:42"]));
    // The next request already has the new scopes.
    let r = http(&s, "POST", "/tickets", &bearer(&key), Some(&create));
    assert_eq!(r.status, 403, "{}", r.raw);
    // A narrow manager: editing outside its reach is 404, widening past it 403.
    let (_, manager) = issue(
        &s,
        json!({ "name": "mgr", "owner": "m", "tenant": "acme", "scopes": ["keys:manage", "read"] }),
    );
    let r = http(
        &s,
        "PATCH",
        &format!("/admin/keys/{id}"),
        &bearer(&manager),
        Some(&json!({ "name": "x" })),
    );
    assert_eq!(r.status, 404, "{}", r.raw);
    let unknown = "0000000000000000000000";
    let r2 = http(
        &s,
        "PATCH",
        &format!("/admin/keys/{unknown}"),
        &bearer(&manager),
        Some(&json!({ "name": "x" })),
    );
    assert_eq!(
        (r2.status, &r2.body["error"]),
        (404, &r.body["error"]),
        "{}",
        r2.raw
    );
    // Issued by the narrow manager itself, so within its reach (lifetime included).
    let r = http(
        &s,
        "POST",
        "/admin/keys",
        &bearer(&manager),
        Some(&json!({ "name": "a", "owner": "m", "scopes": ["read"] })),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    let acme_id = r.body["id"].as_str().expect("id").to_owned();
    let r = http(
        &s,
        "PATCH",
        &format!("/admin/keys/{acme_id}"),
        &bearer(&manager),
        Some(&json!({ "scopes": ["read", "tickets:write"] })),
    );
    assert_eq!(r.status, 403, "{}", r.raw);
    let r = http(
        &s,
        "PATCH",
        &format!("/admin/keys/{acme_id}"),
        &bearer(&manager),
        Some(&json!({ "name": "renamed" })),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    for bad in [
        json!({ "name": "" }),
        json!({ "owner": "x" }),
        json!({ "allowed_ips": ["x"] }),
    ] {
        let r = http(
            &s,
            "PATCH",
            &format!("/admin/keys/{acme_id}"),
            &bearer(&manager),
            Some(&bad),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.raw);
    }
}

#[test]
fn keys_are_bound_to_the_workspace_of_the_host() {
    let s = start();
    let port = s.addr.rsplit(':').next().expect("port").to_owned();
    let (_, acme) = issue(
        &s,
        json!({ "name": "a", "owner": "u", "tenant": "acme", "scopes": ["read"] }),
    );
    let (_, global) = issue(&s, json!({ "name": "g", "owner": "u", "scopes": ["read"] }));
    let at = |host: &str, key: &str, path: &str| http_at(&s, host, "GET", path, &bearer(key), None);
    assert_eq!(
        at(&format!("acme.localhost:{port}"), &acme, "/tickets").status,
        200
    );
    assert_eq!(at("acme.localhost", &acme, "/tickets").status, 200);
    let other = at(&format!("globex.localhost:{port}"), &acme, "/tickets");
    let (gone_id, gone) = issue(
        &s,
        json!({ "name": "gone", "owner": "u", "tenant": "acme", "scopes": ["read"] }),
    );
    let r = http(
        &s,
        "DELETE",
        &format!("/admin/keys/{gone_id}"),
        &bearer(&s.admin),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.raw);
    let unknown = at(&format!("globex.localhost:{port}"), &gone, "/tickets");
    assert_eq!(other.status, 401, "{}", other.raw);
    assert_eq!(other.body["error"], "invalid_token");
    assert_eq!(
        other.body, unknown.body,
        "another workspace's key must look unknown"
    );
    assert_eq!(
        other.header("www-authenticate"),
        unknown.header("www-authenticate")
    );
    // The same on routes behind the Bearer layer (POST /mcp needs read).
    let r = http_at(
        &s,
        &format!("globex.localhost:{port}"),
        "POST",
        "/api/auth/automated-login",
        &bearer(&acme),
        None,
    );
    assert_eq!(r.status, 401, "{}", r.raw);
    // No workspace named: bare localhost, an IP address.
    assert_eq!(
        at(&format!("localhost:{port}"), &acme, "/tickets").status,
        200
    );
    assert_eq!(at(&s.addr, &acme, "/tickets").status, 200);
    // A key without a tenant is not bound.
    assert_eq!(
        at(&format!("globex.localhost:{port}"), &global, "/tickets").status,
        200
    );
}

/// Sends SIGTERM and waits (bounded) for the server to exit; returns whether it exited 0.
#[cfg(unix)]
fn terminate(s: &mut Server) -> bool {
    let pid = s.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -TERM {pid}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = s.child.try_wait().expect("status") {
            return status.success();
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn the_audit_log_is_read_from_the_database_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("audit.db").display()
    );
    let pepper = format!("k1:{}", Base64::encode_string(&[9u8; 32]));
    let env = [
        ("KEYWARD_DATABASE_URL", url.as_str()),
        ("KEYWARD_PEPPER", pepper.as_str()),
    ];
    let mut first = start_with(&env);
    let first_admin = admin_id(&first);
    let (id, key) = issue(
        &first,
        json!({ "name": "bot", "owner": "u", "tenant": "acme", "scopes": ["read"] }),
    );
    for _ in 0..3 {
        assert_eq!(
            http(&first, "GET", "/tickets", &bearer(&key), None).status,
            200
        );
    }
    let r = http(
        &first,
        "PATCH",
        &format!("/admin/keys/{id}"),
        &bearer(&first.admin),
        Some(&json!({ "name": "bot-2" })),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    let r = http(
        &first,
        "POST",
        &format!("/admin/keys/{id}/disable"),
        &bearer(&first.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    // SIGTERM at once: the queue is written out before the process exits.
    assert!(terminate(&mut first), "clean exit on SIGTERM");

    let second = start_with(&env);
    let r = http(
        &second,
        "GET",
        &format!("/admin/audit?key={id}"),
        &bearer(&second.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    let events = r.body.as_array().expect("events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["issued", "verified", "edited", "disabled"],
        "{}",
        r.raw
    );
    assert_eq!(events[0]["actor"], first_admin.as_str());
    assert_eq!(events[1]["count"], 3);
    assert_eq!(events[2]["detail"]["changed"], json!(["name"]));
    for e in events {
        assert!(e["at"].is_i64() && e["time"].is_string(), "{e}");
    }
    // Outside the caller's reach: exactly the answer for an unknown id.
    let (_, other) = issue(
        &second,
        json!({ "name": "m", "owner": "m", "tenant": "globex", "scopes": ["keys:manage", "read"] }),
    );
    let hidden = http(
        &second,
        "GET",
        &format!("/admin/audit?key={id}"),
        &bearer(&other),
        None,
    );
    let unknown = http(
        &second,
        "GET",
        "/admin/audit?key=0000000000000000000000",
        &bearer(&other),
        None,
    );
    assert_eq!(hidden.status, 404, "{}", hidden.raw);
    assert_eq!(
        (hidden.status, &hidden.body["error"]),
        (unknown.status, &unknown.body["error"])
    );
    assert!(!hidden.raw.contains("bot"), "{}", hidden.raw);
}

#[test]
fn imported_legacy_tokens_verify_and_listings_say_which_are_legacy() {
    use keyward::manager::ImportLine;
    use keyward::store::AnyStore;
    use keyward::{Hasher, KeyFormat, KeyManager, Pepper, RequestContext};

    const PEPPER: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let vectors: Value =
        serde_json::from_str(include_str!("interop/legacy_sha256_vectors.json")).expect("JSON");
    let entries = vectors["sha256"].as_array().expect("list").clone();
    let dir = std::env::temp_dir().join(format!("keyward-e2e-legacy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = TempDir(dir.clone());
    let url = format!("sqlite://{}?mode=rwc", dir.join("keys.db").display());
    // What `keytool import` does, into the database the service will open.
    let lines: Vec<ImportLine> = entries
        .iter()
        .map(|e| ImportLine::parse(e["line"].as_str().expect("line")).expect("valid"))
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let manager = KeyManager::new(
                AnyStore::open(&url).await.expect("open"),
                KeyFormat::new(["tak"]).expect("format"),
                Hasher::fast(Pepper::from_text(PEPPER).expect("pepper")),
            );
            manager
                .import(&lines, &RequestContext::new())
                .await
                .expect("import");
        });
    let s = start_with(&[
        ("KEYWARD_DATABASE_URL", &url),
        ("KEYWARD_PEPPER", PEPPER),
        ("KEYWARD_LEGACY_PREFIXES", "old_sk, other_legacy"),
    ]);
    let listed = |s: &Server| -> Vec<Value> {
        listing(s, &s.admin)
            .into_iter()
            .filter(|r| r["owner"].as_str().is_some_and(|o| o.starts_with("user_")))
            .collect()
    };
    let before = listed(&s);
    assert_eq!(before.len(), entries.len());
    assert!(before.iter().all(|r| r["legacy"] == true), "{before:?}");
    assert_eq!(record(&s, &admin_id(&s))["legacy"], false);

    let token = entries[0]["token"].as_str().expect("token");
    let r = http(&s, "GET", "/tickets", &bearer(token), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    // Upgraded on first use: the same token keeps working, and the listing says so.
    let r = http(&s, "GET", "/tickets", &bearer(token), None);
    assert_eq!(r.status, 200, "{}", r.raw);
    let after = listed(&s);
    let legacy: Vec<bool> = after
        .iter()
        .map(|r| r["legacy"].as_bool().expect("legacy flag"))
        .collect();
    assert_eq!(legacy.iter().filter(|l| !**l).count(), 1, "{after:?}");

    let tampered = format!("{token}x");
    let r = http(&s, "GET", "/tickets", &bearer(&tampered), None);
    assert_eq!(r.status, 401, "{}", r.raw);
}

/// Two instances of the service over one database file with `KEYWARD_CACHE_STALENESS_MS`:
/// a key revoked through one is refused by the other within the bound (its cache hears of
/// the change from the file), and the other's last uses, written behind, reach the
/// database within a flush.
#[test]
fn two_cached_instances_see_each_others_revocations() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shared.db").display()
    );
    let pepper = format!("k1:{}", Base64::encode_string(&[11u8; 32]));
    let env = [
        ("KEYWARD_DATABASE_URL", url.as_str()),
        ("KEYWARD_PEPPER", pepper.as_str()),
        ("KEYWARD_CACHE_STALENESS_MS", "1000"),
    ];
    let one = start_with(&env);
    let two = start_with(&env);
    let (id, key) = issue(
        &one,
        json!({ "name": "bot", "owner": "u", "scopes": ["read"] }),
    );
    assert_eq!(
        http(&two, "GET", "/tickets", &bearer(&key), None).status,
        200
    );
    assert_eq!(
        http(&two, "GET", "/tickets", &bearer(&key), None).status,
        200
    );
    // Instance two's last use reaches the database with its next flush (once a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    while record(&one, &id)["last_used_at"].is_null() {
        assert!(Instant::now() < deadline, "last use never written");
        std::thread::sleep(Duration::from_millis(50));
    }

    let r = http(
        &one,
        "POST",
        &format!("/admin/keys/{id}/revoke"),
        &bearer(&one.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        http(&one, "GET", "/tickets", &bearer(&key), None).status,
        401
    );
    let revoked = Instant::now();
    while http(&two, "GET", "/tickets", &bearer(&key), None).status == 200 {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "accepted {:?} after the revocation",
            revoked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
