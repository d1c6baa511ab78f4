//! Leaked keys: tokens reported by a secret scanner (GitHub, GitLab) are verified like a
//! presented key, and the genuine ones are revoked.
//!
//! A report proves nothing by itself: anyone can write a key id into a public file. So a
//! report revokes a key only when the whole token verifies against the stored hash; a
//! foreign token, a malformed one, an unknown id or a wrong secret is a false positive and
//! changes nothing.
//!
//! ```
//! use keyward::leak::LeakReport;
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keyward::Error> {
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
//! let ctx = RequestContext::new();
//! let issued = manager.issue(IssueRequest::new("ci", "user_1").scopes("read".parse()?), &ctx).await?;
//! // A scanner found the key in a public repository:
//! let report = LeakReport::new(issued.key.expose_secret(), "keyward_api_key");
//! let verdicts = manager.revoke_leaked(&[report], &ctx).await?;
//! assert!(verdicts[0].revoked_now);
//! assert!(manager.verify(issued.key.expose_secret(), &ctx).await.is_err());
//! # Ok(()) }
//! ```
//!
//! With the feature `secret-scanning`, `leak::scanning` receives the scanners' signed alerts
//! (GitHub, GitLab) over HTTP and hands them to
//! [`KeyManager::revoke_leaked`](crate::KeyManager::revoke_leaked).

#[cfg(feature = "secret-scanning")]
#[cfg_attr(docsrs, doc(cfg(feature = "secret-scanning")))]
pub mod scanning;

use core::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::key::id::KeyId;
use crate::manager::KeyManager;
use crate::manager::lifecycle::LifecycleError;
use crate::record::{KeyRecord, KeyStatus};
use crate::store::{KeyStore, StoreError};

/// The revocation reason recorded for leaked keys.
pub const LEAKED_REASON: &str = "leaked";

/// One token found by a secret scanner, with where it was found.
///
/// The token is a secret until it is revoked: it has no `Clone`, its `Debug` shows only its
/// SHA-256, and it is zeroized on drop.
///
/// ```
/// let report = keyward::leak::LeakReport::new("tak_…", "keyward_api_key")
///     .url("https://github.com/octo/repo/blob/main/.env")
///     .source("commit");
/// assert_eq!(report.source.as_deref(), Some("commit"));
/// ```
#[non_exhaustive]
pub struct LeakReport {
    token: Zeroizing<String>,
    /// The scanner's name for the token type (GitHub's `type`).
    pub token_type: String,
    /// Where the token was found (may be absent or empty).
    pub url: Option<String>,
    /// What kind of place it was found in, such as `commit` or `npm` (GitHub only).
    pub source: Option<String>,
    /// Which scanner reported it, such as `github` or `gitlab`.
    pub scanner: Option<String>,
}

impl LeakReport {
    /// A report of `token`, of the scanner's type `token_type`.
    pub fn new(token: impl Into<String>, token_type: impl Into<String>) -> Self {
        Self {
            token: Zeroizing::new(token.into()),
            token_type: token_type.into(),
            url: None,
            source: None,
            scanner: None,
        }
    }

    /// Sets where the token was found.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the kind of place it was found in.
    #[must_use]
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets which scanner reported it.
    #[must_use]
    pub fn scanner(mut self, scanner: impl Into<String>) -> Self {
        self.scanner = Some(scanner.into());
        self
    }

    /// The reported token. Named so that every use is easy to find in review.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.token
    }

    /// Lowercase hex SHA-256 of the token: what a response may repeat instead of the token.
    #[must_use]
    pub fn token_hash(&self) -> String {
        token_hash(&self.token)
    }
}

impl fmt::Debug for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakReport")
            .field("token_hash", &self.token_hash())
            .field("token_type", &self.token_type)
            .field("url", &self.url)
            .field("source", &self.source)
            .field("scanner", &self.scanner)
            .finish()
    }
}

/// Lowercase hex SHA-256 of `token`.
pub(crate) fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether a reported token is a real key of this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeakLabel {
    /// The whole token verified against a stored key: it is (now) revoked.
    TruePositive,
    /// Not a key of this service, or its secret does not verify: nothing changed.
    FalsePositive,
}

impl LeakLabel {
    /// `true_positive` or `false_positive`, as GitHub's feedback format spells them.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TruePositive => "true_positive",
            Self::FalsePositive => "false_positive",
        }
    }
}

impl fmt::Display for LeakLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`KeyManager::revoke_leaked`] found for one report, in the order of the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakVerdict {
    /// Lowercase hex SHA-256 of the reported token (never the token itself).
    pub token_hash: String,
    /// The scanner's token type, as reported.
    pub token_type: String,
    /// True or false positive.
    pub label: LeakLabel,
    /// For a true positive: the key's record after revocation. Its owner, tenant and name
    /// say whom to tell; [`KeyRecord::preview`] is safe to show them.
    pub record: Option<KeyRecord>,
    /// Whether this call revoked the key (`false` for a key that was revoked already, and
    /// for false positives).
    pub revoked_now: bool,
}

impl LeakVerdict {
    fn false_positive(report: &LeakReport) -> Self {
        Self {
            token_hash: report.token_hash(),
            token_type: report.token_type.clone(),
            label: LeakLabel::FalsePositive,
            record: None,
            revoked_now: false,
        }
    }

    /// The id of the leaked key, for a true positive.
    #[must_use]
    pub fn key_id(&self) -> Option<KeyId> {
        self.record.as_ref().map(|r| r.id)
    }
}

/// Why leak reports could not be processed. Reports before the failing one keep their
/// effect (revocation is final), so the whole batch can be retried safely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeakError {
    /// The store failed: no verdict can be given (fail closed; the scanner should retry).
    #[error("could not process leak reports")]
    Store(#[source] StoreError),
    /// The key kept changing under concurrent updates.
    #[error("key {0} is being changed concurrently; try again")]
    Contended(KeyId),
    /// A genuine key could not be revoked for another reason than the store (its cause
    /// says why).
    #[error("could not revoke a leaked key")]
    Revoke(#[source] LifecycleError),
}

impl<S: KeyStore> KeyManager<S> {
    /// Handles tokens reported by a secret scanner: each token that verifies as a key of
    /// this manager (format, checksum, id and secret against the stored hash, compared in
    /// constant time), or as the legacy token of an imported key whose prefix is configured
    /// ([`KeyManager::with_legacy`]), is revoked with the reason [`LEAKED_REASON`], whatever
    /// its state:
    /// active, disabled, expired, or the old half of a rotation still in its grace period.
    /// Everything else is a false positive and changes nothing; a report never revokes a
    /// key by its id alone.
    ///
    /// Audit: each true positive emits [`AuditKind::LeakReported`] with the url, source and
    /// token type (also when the key was revoked already, so every place a key leaked to is
    /// on record), and a key revoked now also emits [`AuditKind::Revoked`] with the reason
    /// `leaked`. False positives emit nothing.
    ///
    /// Idempotent: a replayed or retried batch revokes nothing twice.
    ///
    /// # Errors
    /// [`LeakError`] when the store fails; no verdicts are returned then, so that a caller
    /// never labels a token it could not check.
    pub async fn revoke_leaked(
        &self,
        reports: &[LeakReport],
        ctx: &RequestContext,
    ) -> Result<Vec<LeakVerdict>, LeakError> {
        let mut verdicts = Vec::with_capacity(reports.len());
        for report in reports {
            verdicts.push(self.revoke_one_leaked(report, ctx).await?);
        }
        Ok(verdicts)
    }

    async fn revoke_one_leaked(
        &self,
        report: &LeakReport,
        ctx: &RequestContext,
    ) -> Result<LeakVerdict, LeakError> {
        let secret = report.expose_secret();
        let matched = match self.format.parse(secret) {
            Ok(parsed) => {
                let id = parsed.key_id();
                match self.store.get(&id).await {
                    Ok(Some(record)) => (record.id == id
                        && self.hasher.verify(&parsed, &record.hash).is_ok())
                    .then_some(record),
                    Ok(None) => {
                        self.hasher.verify_absent(&parsed);
                        None
                    }
                    Err(e) => return Err(LeakError::Store(e)),
                }
            }
            // An imported key's legacy token, when its prefix is configured.
            Err(_) => match self.legacy.parse(secret) {
                Ok(token) => Box::pin(self.match_legacy(&token))
                    .await
                    .map_err(LeakError::Store)?,
                Err(_) => None,
            },
        };
        let Some(record) = matched else {
            return Ok(LeakVerdict::false_positive(report));
        };
        let id = record.id;
        let (record, revoked_now) = if record.status == KeyStatus::Revoked {
            (KeyRecord::clone(&record), false)
        } else {
            match self.revoke(&id, Some(LEAKED_REASON), ctx).await {
                Ok(revoked) => (revoked, true),
                // Deleted since it was read: genuine, and nothing is left to revoke.
                Err(LifecycleError::NotFound(_)) => (KeyRecord::clone(&record), false),
                Err(LifecycleError::Contended(id)) => return Err(LeakError::Contended(id)),
                Err(LifecycleError::Store(e)) => return Err(LeakError::Store(e)),
                Err(e) => return Err(LeakError::Revoke(e)),
            }
        };
        let kind = AuditKind::LeakReported {
            token_type: report.token_type.clone(),
            url: report.url.clone().filter(|u| !u.is_empty()),
            source: report.source.clone(),
            scanner: report.scanner.clone(),
            revoked: revoked_now,
        };
        self.emit(AuditEvent::new(self.clock.now(), kind, ctx).about(&record));
        Ok(LeakVerdict {
            token_hash: report.token_hash(),
            token_type: report.token_type.clone(),
            label: LeakLabel::TruePositive,
            record: Some(record),
            revoked_now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let report = LeakReport::new("tak_secretsecret", "t");
        assert!(!format!("{report:?}").contains("secretsecret"));
    }
}
