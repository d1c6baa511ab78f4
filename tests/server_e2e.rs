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
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr
    );
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

    // MCP over the Bearer key.
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let r = http(&s, "POST", "/mcp", &bearer(&w), Some(&call));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["result"]["tools"][0]["name"], "list_tickets");
    assert_eq!(http(&s, "POST", "/mcp", &[], Some(&call)).status, 401);
}
