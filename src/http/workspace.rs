//! Workspace binding: where a request names its workspace (host, path or header), and
//! whether a verified key may be used there.
//!
//! A key "scoped to your workspace" (`https://acme.toolio.com/mcp`) must not work at
//! another workspace's address. The layers read the request's workspace with a
//! [`WorkspaceSource`] and refuse a key whose tenant is another, exactly as an unknown key
//! (401 `invalid_token`), so a key reveals nothing about other workspaces. A request that
//! names no workspace binds nothing, and a key without a tenant is not bound.

use std::sync::Arc;

use crate::verified::Verified;

/// The parts of a request a [`WorkspaceSource`] may read, framework independent.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct RequestParts<'a> {
    /// The host the request was sent to (the `Host` header, or the URI's authority), with
    /// its port if any.
    pub host: Option<&'a str>,
    /// The request path, such as `/acme/mcp`.
    pub path: &'a str,
    /// The value of a header by lowercase name (the first, when repeated and textual).
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
}

impl core::fmt::Debug for RequestParts<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestParts")
            .field("host", &self.host)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<'a> RequestParts<'a> {
    /// The parts of a request.
    #[must_use]
    pub fn new(
        host: Option<&'a str>,
        path: &'a str,
        header: &'a dyn Fn(&str) -> Option<&'a str>,
    ) -> Self {
        Self { host, path, header }
    }
}

/// An application's rule for [`WorkspaceSource::Custom`].
pub type WorkspaceRule = dyn Fn(&RequestParts<'_>) -> Option<String> + Send + Sync;

/// Where a request names its workspace.
///
/// ```
/// use keyward::http::{RequestParts, WorkspaceSource};
/// let by_host = WorkspaceSource::host_suffix("localhost");
/// let no_headers = |_: &str| None;
/// let at = |host| by_host.resolve(&RequestParts::new(Some(host), "/mcp", &no_headers));
/// assert_eq!(at("acme.localhost:8080").as_deref(), Some("acme"));
/// assert_eq!(at("localhost:8080"), None); // a bare host names no workspace
/// assert_eq!(at("127.0.0.1:8080"), None); // nor does an address
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum WorkspaceSource {
    /// The host's first labels before `.suffix` (`acme.toolio.com` with suffix
    /// `toolio.com` names `acme`). The port is ignored; a host that is the suffix itself,
    /// an IP address or another domain names none. Compared without regard to ASCII case.
    HostSuffix(String),
    /// The path segment at this index (0: the first, `/acme/mcp` names `acme`).
    PathSegment(usize),
    /// A header (lowercase name) holding the workspace.
    Header(String),
    /// The application's own rule.
    Custom(Arc<WorkspaceRule>),
}

impl core::fmt::Debug for WorkspaceSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::HostSuffix(s) => f.debug_tuple("HostSuffix").field(s).finish(),
            Self::PathSegment(i) => f.debug_tuple("PathSegment").field(i).finish(),
            Self::Header(h) => f.debug_tuple("Header").field(h).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl WorkspaceSource {
    /// [`WorkspaceSource::HostSuffix`] (a leading dot is optional).
    #[must_use]
    pub fn host_suffix(suffix: impl Into<String>) -> Self {
        let suffix: String = suffix.into();
        Self::HostSuffix(suffix.trim_start_matches('.').to_ascii_lowercase())
    }

    /// [`WorkspaceSource::Custom`].
    #[must_use]
    pub fn custom(
        rule: impl Fn(&RequestParts<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self::Custom(Arc::new(rule))
    }

    /// The workspace the request names, if any. An empty name counts as none.
    #[must_use]
    pub fn resolve(&self, parts: &RequestParts<'_>) -> Option<String> {
        let found = match self {
            Self::HostSuffix(suffix) => parts.host.and_then(|h| host_label(h, suffix)),
            Self::PathSegment(index) => parts
                .path
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(*index)
                .map(str::to_owned),
            Self::Header(name) => (parts.header)(name).map(|v| v.trim().to_owned()),
            Self::Custom(rule) => rule(parts),
        };
        found.filter(|w| !w.is_empty())
    }
}

/// The labels of `host` before `.suffix`, lowercased.
fn host_label(host: &str, suffix: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.');
    // Strip the port (`[v6]:port` names no workspace anyway).
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.to_ascii_lowercase();
    let label = name.strip_suffix(suffix)?.strip_suffix('.')?;
    (!label.is_empty()).then(|| label.to_owned())
}

/// Whether `key` may be used at `workspace`: always when the request names none or the key
/// has no tenant; otherwise only when the key's tenant is that workspace.
#[must_use]
pub fn admits_workspace(key: &Verified, workspace: Option<&str>) -> bool {
    match (workspace, key.tenant()) {
        (Some(workspace), Some(tenant)) => workspace == tenant,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(source: &WorkspaceSource, host: &str, path: &str) -> Option<String> {
        let header = |name: &str| (name == "x-workspace").then_some("beta");
        source.resolve(&RequestParts::new(Some(host), path, &header))
    }

    #[test]
    fn hosts() {
        let s = WorkspaceSource::host_suffix(".localhost");
        assert_eq!(resolve(&s, "acme.localhost", "/").as_deref(), Some("acme"));
        assert_eq!(
            resolve(&s, "ACME.Localhost:3000", "/").as_deref(),
            Some("acme")
        );
        assert_eq!(resolve(&s, "a.b.localhost", "/").as_deref(), Some("a.b"));
        assert_eq!(resolve(&s, "localhost:3000", "/"), None);
        assert_eq!(resolve(&s, ".localhost", "/"), None);
        assert_eq!(resolve(&s, "127.0.0.1:3000", "/"), None);
        assert_eq!(resolve(&s, "[::1]:3000", "/"), None);
        assert_eq!(resolve(&s, "acmelocalhost", "/"), None);
        assert_eq!(resolve(&s, "acme.example.com", "/"), None);
    }

    #[test]
    fn paths_and_headers() {
        let p = WorkspaceSource::PathSegment(0);
        assert_eq!(resolve(&p, "h", "/acme/mcp").as_deref(), Some("acme"));
        assert_eq!(resolve(&p, "h", "/"), None);
        let h = WorkspaceSource::Header("x-workspace".into());
        assert_eq!(resolve(&h, "h", "/").as_deref(), Some("beta"));
        let c = WorkspaceSource::custom(|parts| Some(parts.path.len().to_string()));
        assert_eq!(resolve(&c, "h", "/abc").as_deref(), Some("4"));
    }
}
