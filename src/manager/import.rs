//! Importing keys issued by another system, known only by the digest that system kept, so
//! that customers keep their keys: no forced rotation.
//!
//! An import line ([`ImportLine::parse`], one JSON object) names the digest, the key's
//! owner, name and scopes. [`KeyManager::import`] stores each as a record whose id is
//! derived from the digest under the pepper and whose hash is that digest, peppered
//! ([`StoredHash::is_foreign`](crate::StoredHash::is_foreign)); the token verifies when its
//! prefix is configured with [`KeyManager::with_legacy`], and the first successful
//! verification rehashes it under the current settings.
//!
//! ```
//! use keyward::{Hasher, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! use keyward::key::LegacyFormats;
//! use keyward::manager::ImportLine;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?))
//!     .with_legacy(LegacyFormats::new().sha256("old_sk")?)?;
//! // sha256("old_sk_s3cr3t-t0ken"), as the old system stored it.
//! let line = ImportLine::parse(r#"{"sha256": "9004f9bd13f7597f8efa1291254d54f6bccf2c8379fd05fd781f0430d8880fe2", "name": "ci", "owner": "user_1", "scopes": ["read"]}"#)?;
//! let summary = manager.import(&[line], &RequestContext::new()).await?;
//! assert_eq!((summary.imported(), summary.skipped()), (1, 0));
//! # Ok(()) }
//! ```

use core::fmt;
use std::error::Error as StdError;

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::KeyManager;
use super::reasons::{MAX_NAME_LEN, MAX_OWNER_LEN};
use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::hash::{FOREIGN_DIGEST_LEN, ForeignKey};
use crate::key::id::KeyId;
use crate::key::prefix::{Prefix, PrefixError};

use crate::record::{KeyRecord, KeyStatus, Metadata};
use crate::scope::{CatalogError, ResourceError, Restrictions, Scope, ScopeError, ScopeSet};
use crate::store::{KeyStore, StoreError};

/// Longest import line accepted, in bytes.
pub const MAX_IMPORT_LINE_LEN: usize = 16 * 1024;

/// The prefix recorded for an imported whole-token SHA-256 key whose line names none.
pub const DEFAULT_IMPORT_PREFIX: &str = "legacy";

/// Longest prefixed-api-key short token accepted, in bytes.
const MAX_SHORT_TOKEN_LEN: usize = 64;

/// One key to import, validated: its digest and the record's fields.
///
/// The JSON form, one object per line (unknown fields are refused):
///
/// | field | value |
/// |---|---|
/// | `sha256` | SHA-256 of the whole token: 64 hex digits, or base64 (standard or URL-safe, padded or not) |
/// | `prefixed_api_key` | instead of `sha256`: `{"prefix", "short_token", "long_token_sha256"}` (the seamapi / prefixed-api-key scheme) |
/// | `name`, `owner` | 1 to 128 bytes each |
/// | `scopes` | a list of scopes |
/// | `expires_at` | optional, RFC 3339 |
/// | `tenant` | optional, 1 to 128 bytes |
/// | `restrictions` | optional list of resource paths |
/// | `prefix` | optional, the prefix shown in previews (default `legacy`; a prefixed-api-key line uses its own) |
#[derive(Clone)]
pub struct ImportLine {
    digest: ImportDigest,
    prefix: Prefix,
    name: String,
    owner: String,
    scopes: ScopeSet,
    expires_at: Option<OffsetDateTime>,
    tenant: Option<String>,
    restrictions: Restrictions,
}

#[derive(Clone)]
enum ImportDigest {
    Sha256([u8; FOREIGN_DIGEST_LEN]),
    PrefixedApiKey {
        short: String,
        long: [u8; FOREIGN_DIGEST_LEN],
    },
}

/// Why an import line is refused. Messages never contain the digest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportLineError {
    /// The line is longer than [`MAX_IMPORT_LINE_LEN`].
    #[error("line too long (maximum {MAX_IMPORT_LINE_LEN} bytes)")]
    TooLong,
    /// Not a JSON object of the import fields (its source says what kind of problem and
    /// where, never a value of the line: serde's own messages quote values, digests
    /// included).
    #[error("not a JSON object of import fields")]
    Json(#[source] Box<dyn StdError + Send + Sync>),
    /// Neither `sha256` nor `prefixed_api_key`, or both.
    #[error("exactly one digest expected: sha256 or prefixed_api_key")]
    Digest,
    /// A digest is not 32 bytes of hex or base64.
    #[error("{field} is not a SHA-256 digest (64 hex digits or 32 bytes of base64)")]
    BadDigest {
        /// `sha256` or `long_token_sha256`.
        field: &'static str,
    },
    /// A prefixed-api-key short token is empty, too long or has characters outside
    /// `A-Z a-z 0-9 - . ~ + /`.
    #[error(
        "short_token must have 1 to {MAX_SHORT_TOKEN_LEN} characters of A-Z, a-z, 0-9, -, ., ~, +, /"
    )]
    ShortToken,
    /// The prefix is invalid.
    #[error("prefix: {0}")]
    Prefix(#[source] PrefixError),
    /// A prefixed-api-key line names another top-level `prefix` than its token's.
    #[error("prefix differs from prefixed_api_key.prefix")]
    PrefixConflict,
    /// The name is empty or too long.
    #[error("name must have 1 to {MAX_NAME_LEN} bytes")]
    Name,
    /// The owner is empty or too long.
    #[error("owner must have 1 to {MAX_OWNER_LEN} bytes")]
    Owner,
    /// The tenant is empty or too long.
    #[error("tenant must have 1 to {MAX_OWNER_LEN} bytes")]
    Tenant,
    /// A scope is malformed, or there are too many.
    #[error("scopes: {0}")]
    Scope(#[source] ScopeError),
    /// A restriction is malformed, or the list is empty or too long.
    #[error("restrictions: {0}")]
    Restriction(#[source] ResourceError),
    /// `expires_at` is not an RFC 3339 date-time.
    #[error("expires_at is not an RFC 3339 date-time, such as 2027-01-31T00:00:00Z")]
    ExpiresAt,
    /// A scope is not in the manager's catalog.
    #[error(transparent)]
    Catalog(CatalogError),
    /// Another line of the same import has the same digest.
    #[error("the same digest as line {0} of this import")]
    Repeated(usize),
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Lines were refused: each with its position in the import (counted from 1) and the
    /// reason. Nothing was written.
    #[error("{} import lines refused, nothing written", .0.len())]
    Refused(Vec<(usize, ImportLineError)>),
    /// The hasher has no pepper, so no imported id or digest can be derived.
    #[error("importing keys needs a pepper (the hasher has none)")]
    NoPepper,
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    imported: usize,
    skipped: usize,
}

impl ImportSummary {
    /// Keys written by this import.
    #[must_use]
    pub fn imported(&self) -> usize {
        self.imported
    }

    /// Lines whose key was imported already (a rerun), left as they were.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    sha256: Option<String>,
    prefixed_api_key: Option<RawPrefixed>,
    name: String,
    owner: String,
    scopes: Vec<String>,
    expires_at: Option<String>,
    tenant: Option<String>,
    restrictions: Option<Vec<String>>,
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefixed {
    prefix: String,
    short_token: String,
    long_token_sha256: String,
}

/// What was wrong with an import line's JSON, without any of its values.
#[derive(Debug)]
struct JsonShape {
    category: serde_json::error::Category,
    line: usize,
    column: usize,
}

impl JsonShape {
    fn of(e: &serde_json::Error) -> Self {
        Self {
            category: e.classify(),
            line: e.line(),
            column: e.column(),
        }
    }
}

impl fmt::Display for JsonShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use serde_json::error::Category;
        let what = match self.category {
            Category::Syntax => "malformed JSON",
            Category::Eof => "the JSON ends early",
            Category::Data => "a field is missing, unknown or of the wrong type",
            Category::Io => "the line could not be read",
        };
        write!(f, "{what} at column {}", self.column)?;
        if self.line > 1 {
            write!(f, " of line {}", self.line)?;
        }
        Ok(())
    }
}

impl StdError for JsonShape {}

impl ImportLine {
    /// Parses and validates one import line (a JSON object; see the table above).
    ///
    /// # Errors
    /// An [`ImportLineError`] naming the first problem.
    pub fn parse(line: &str) -> Result<Self, ImportLineError> {
        if line.len() > MAX_IMPORT_LINE_LEN {
            return Err(ImportLineError::TooLong);
        }
        let raw: RawLine = serde_json::from_str(line)
            .map_err(|e| ImportLineError::Json(Box::new(JsonShape::of(&e))))?;
        let (digest, prefix) = match (raw.sha256, raw.prefixed_api_key) {
            (Some(hex), None) => {
                let prefix = raw.prefix.as_deref().unwrap_or(DEFAULT_IMPORT_PREFIX);
                (
                    ImportDigest::Sha256(digest("sha256", &hex)?),
                    Prefix::new(prefix).map_err(ImportLineError::Prefix)?,
                )
            }
            (None, Some(pak)) => {
                let short = pak.short_token;
                let valid = !short.is_empty()
                    && short.len() <= MAX_SHORT_TOKEN_LEN
                    && short.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'~' | b'+' | b'/')
                    });
                if !valid {
                    return Err(ImportLineError::ShortToken);
                }
                let long = digest("long_token_sha256", &pak.long_token_sha256)?;
                let prefix = Prefix::new(&pak.prefix).map_err(ImportLineError::Prefix)?;
                if raw.prefix.is_some_and(|p| p != prefix.as_str()) {
                    return Err(ImportLineError::PrefixConflict);
                }
                (ImportDigest::PrefixedApiKey { short, long }, prefix)
            }
            _ => return Err(ImportLineError::Digest),
        };
        let bad_len = |text: &str, max: usize| text.is_empty() || text.len() > max;
        if bad_len(&raw.name, MAX_NAME_LEN) {
            return Err(ImportLineError::Name);
        }
        if bad_len(&raw.owner, MAX_OWNER_LEN) {
            return Err(ImportLineError::Owner);
        }
        if raw
            .tenant
            .as_deref()
            .is_some_and(|t| bad_len(t, MAX_OWNER_LEN))
        {
            return Err(ImportLineError::Tenant);
        }
        let scopes = raw
            .scopes
            .iter()
            .map(|s| s.parse::<Scope>())
            .collect::<Result<Vec<_>, _>>()
            .and_then(ScopeSet::from_scopes)
            .map_err(ImportLineError::Scope)?;
        let restrictions = match raw.restrictions {
            Some(list) => Restrictions::only(list).map_err(ImportLineError::Restriction)?,
            None => Restrictions::default(),
        };
        let expires_at = raw
            .expires_at
            .map(|t| OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| ImportLineError::ExpiresAt))
            .transpose()?;
        Ok(Self {
            digest,
            prefix,
            name: raw.name,
            owner: raw.owner,
            scopes,
            expires_at,
            tenant: raw.tenant,
            restrictions,
        })
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's owner.
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The key's scopes.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    fn foreign_key(&self) -> ForeignKey<'_> {
        match &self.digest {
            ImportDigest::Sha256(digest) => ForeignKey::sha256(*digest),
            ImportDigest::PrefixedApiKey { short, long } => {
                ForeignKey::prefixed(self.prefix.as_str(), short, *long)
            }
        }
    }
}

impl fmt::Debug for ImportLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest is left out: it is what a legacy token is checked against.
        f.debug_struct("ImportLine")
            .field("prefix", &self.prefix)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .field("tenant", &self.tenant)
            .field("restrictions", &self.restrictions)
            .finish_non_exhaustive()
    }
}

/// A 32-byte digest from 64 hex digits or base64 (standard or URL-safe, padded or not).
fn digest(field: &'static str, text: &str) -> Result<[u8; FOREIGN_DIGEST_LEN], ImportLineError> {
    let err = ImportLineError::BadDigest { field };
    if text.len() == 2 * FOREIGN_DIGEST_LEN {
        let mut out = [0u8; FOREIGN_DIGEST_LEN];
        // 64 characters that are not all hex digits may still be base64, tried below.
        if base16ct::mixed::decode(text, &mut out).is_ok() {
            return Ok(out);
        }
    }
    let decoded = Base64::decode_vec(text)
        .or_else(|_| Base64Unpadded::decode_vec(text))
        .or_else(|_| Base64Url::decode_vec(text))
        .or_else(|_| Base64UrlUnpadded::decode_vec(text))
        .map_err(|_| err)?;
    <[u8; FOREIGN_DIGEST_LEN]>::try_from(decoded.as_slice())
        .map_err(|_| ImportLineError::BadDigest { field })
}

impl<S: KeyStore> KeyManager<S> {
    /// Checks an import without writing anything: every line against the catalog (if the
    /// manager has one) and against the other lines (two lines with one digest), as
    /// [`KeyManager::import`] does first.
    ///
    /// # Errors
    /// [`ImportError::Refused`] listing every refused line, or [`ImportError::NoPepper`].
    pub fn check_import(&self, lines: &[ImportLine]) -> Result<(), ImportError> {
        self.prepare(lines, self.clock.now()).map(drop)
    }

    /// The records of an import, or every refused line.
    fn prepare(
        &self,
        lines: &[ImportLine],
        now: OffsetDateTime,
    ) -> Result<Vec<KeyRecord>, ImportError> {
        let mut refused = Vec::new();
        let mut records: Vec<KeyRecord> = Vec::with_capacity(lines.len());
        let mut seen: std::collections::HashMap<KeyId, usize> = std::collections::HashMap::new();
        for (index, line) in lines.iter().enumerate() {
            let position = index + 1;
            if let Some(catalog) = &self.catalog
                && let Err(e) = catalog.validate(&line.scopes, &[])
            {
                refused.push((position, ImportLineError::Catalog(e)));
                continue;
            }
            let (id, hash) = self
                .hasher
                .foreign_record(&line.foreign_key())
                .ok_or(ImportError::NoPepper)?;
            match seen.entry(id) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    refused.push((position, ImportLineError::Repeated(*first.get())));
                    continue;
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(position);
                }
            }
            records.push(KeyRecord {
                id,
                prefix: line.prefix.clone(),
                tenant: line.tenant.clone(),
                name: line.name.clone(),
                owner: line.owner.clone(),
                scopes: line.scopes.clone(),
                roles: Vec::new(),
                restrictions: line.restrictions.clone(),
                allowed_networks: crate::network::Networks::any(),
                metadata: Metadata::default(),
                created_at: now,
                expires_at: line.expires_at,
                last_used_at: None,
                status: KeyStatus::Active,
                hash,
                version: 0,
                rotated_from: None,
                rotated_to: None,
                issued_by: None,
                parent: None,
                remaining_uses: None,
                refill: None,
                refilled_at: None,
            });
        }
        if refused.is_empty() {
            Ok(records)
        } else {
            Err(ImportError::Refused(refused))
        }
    }

    /// Imports keys of another system, all or nothing: every line is checked (against the
    /// catalog, if any, and for repeated digests) before anything is written, and the new
    /// records are written by one [`KeyStore::insert_all`] (one transaction on the SQL
    /// stores). A line whose key was imported already is skipped and counted, so running
    /// the same import again changes nothing.
    ///
    /// Each record's id is derived from the digest under the current pepper, and its hash
    /// is the digest peppered ([`StoredHash::is_foreign`](crate::StoredHash::is_foreign)).
    /// Imported keys verify once their prefix is configured with
    /// [`KeyManager::with_legacy`], and are rehashed under the current settings by their
    /// first successful verification.
    ///
    /// An import is the operator's bulk action and brings keys as they are: the issuance
    /// policy's lifetime bounds (maximum lifetime, never-expiring keys) and caps on live keys
    /// are not applied to them, nor is the issuance hook; an `expires_at` in the past is kept
    /// (the key is imported expired). Check lines against your own rules before importing.
    ///
    /// # Errors
    /// [`ImportError::Refused`] listing every refused line, [`ImportError::NoPepper`], or
    /// a store failure; nothing is written on any error.
    pub async fn import(
        &self,
        lines: &[ImportLine],
        ctx: &RequestContext,
    ) -> Result<ImportSummary, ImportError> {
        let now = self.clock.now();
        let records = self.prepare(lines, now)?;
        let mut fresh = Vec::with_capacity(records.len());
        // `prepare` refuses the whole file on any bad line, so records follow lines one to
        // one. A key imported before under any accepted pepper (before a pepper rotation)
        // is skipped too: a second record would be a second life for a revoked key.
        for (line, record) in lines.iter().zip(records) {
            let mut known = false;
            for id in self.hasher.foreign_ids(&line.foreign_key()) {
                known |= self.store.get(&id).await?.is_some();
            }
            if !known {
                fresh.push(record);
            }
        }
        let summary = ImportSummary {
            imported: fresh.len(),
            skipped: lines.len() - fresh.len(),
        };
        if !fresh.is_empty() {
            self.store.insert_all(fresh.clone()).await?;
        }
        if self.audit.enabled() {
            for record in &fresh {
                self.emit(AuditEvent::new(now, AuditKind::Imported, ctx).about(record));
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_repeat_a_value_of_the_line() {
        let digest = "4eca46209b1a3cdd85bd3f9d1b70b1b0ae0e9f06a98ea3a63b7e6c5fe9e3c0a1";
        let text = format!(
            r#"{{"prefixed_api_key": "{digest}", "name": "n", "owner": "o", "scopes": ["read"]}}"#
        );
        let e = ImportLine::parse(&text)
            .map(|_| ())
            .expect_err("a string is no prefixed key");
        let mut chain = format!("{e} {e:?}");
        let mut source = StdError::source(&e);
        while let Some(s) = source {
            chain.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        assert!(matches!(e, ImportLineError::Json(_)), "{chain}");
        assert!(!chain.contains(&digest[..16]), "{chain}");
        assert!(chain.contains("wrong type"), "{chain}");
    }

    const HEX: &str = "9004f9bd13f7597f8efa1291254d54f6bccf2c8379fd05fd781f0430d8880fe2";

    fn line(fields: &str) -> Result<ImportLine, ImportLineError> {
        ImportLine::parse(&format!(
            r#"{{"name": "ci", "owner": "u1", "scopes": ["read"]{fields}}}"#
        ))
    }

    #[test]
    fn digests_in_hex_and_base64_agree() {
        let hex = line(&format!(r#", "sha256": "{HEX}""#)).expect("hex");
        let upper = line(&format!(r#", "sha256": "{}""#, HEX.to_uppercase())).expect("HEX");
        let bytes = match hex.digest {
            ImportDigest::Sha256(d) => d,
            ImportDigest::PrefixedApiKey { .. } => panic!("sha256 line"),
        };
        for b64 in [
            Base64::encode_string(&bytes),
            Base64Unpadded::encode_string(&bytes),
            Base64Url::encode_string(&bytes),
            Base64UrlUnpadded::encode_string(&bytes),
        ] {
            let other = line(&format!(r#", "sha256": "{b64}""#)).expect("base64");
            assert_eq!(other.foreign_key().digest, bytes, "{b64}");
        }
        assert_eq!(upper.foreign_key().digest, bytes);
    }

    #[test]
    fn refusals() {
        type Check = fn(&ImportLineError) -> bool;
        let table: [(&str, Check); 10] = [
            ("", |e| matches!(e, ImportLineError::Digest)),
            (r#", "sha256": "abc""#, |e| {
                matches!(e, ImportLineError::BadDigest { field: "sha256" })
            }),
            (r#", "sha256": "6beea27f", "extra": 1"#, |e| {
                matches!(e, ImportLineError::Json(_))
            }),
            (r#", "sha256": "AAAA""#, |e| {
                matches!(e, ImportLineError::BadDigest { .. })
            }),
            (
                r#", "prefixed_api_key": {"prefix": "acme", "short_token": "a_b", "long_token_sha256": "x"}"#,
                |e| matches!(e, ImportLineError::ShortToken),
            ),
            (
                r#", "prefixed_api_key": {"prefix": "Acme", "short_token": "ab", "long_token_sha256": "9004f9bd13f7597f8efa1291254d54f6bccf2c8379fd05fd781f0430d8880fe2"}"#,
                |e| matches!(e, ImportLineError::Prefix(_)),
            ),
            (
                r#", "sha256": "9004f9bd13f7597f8efa1291254d54f6bccf2c8379fd05fd781f0430d8880fe2", "expires_at": "2027-13-01""#,
                |e| matches!(e, ImportLineError::ExpiresAt),
            ),
            (
                r#", "sha256": "9004f9bd13f7597f8efa1291254d54f6bccf2c8379fd05fd781f0430d8880fe2", "tenant": """#,
                |e| matches!(e, ImportLineError::Tenant),
            ),
            (
                r#", "sha256": "9004f9bd13f7597f8efa1291254d54f6bccf2c8379fd05fd781f0430d8880fe2", "restrictions": []"#,
                |e| matches!(e, ImportLineError::Restriction(_)),
            ),
            (
                r#", "sha256": "9004f9bd13f7597f8efa1291254d54f6bccf2c8379fd05fd781f0430d8880fe2", "prefix": "Bad""#,
                |e| matches!(e, ImportLineError::Prefix(_)),
            ),
        ];
        for (fields, check) in table {
            let err = line(fields).expect_err(fields);
            assert!(check(&err), "{fields}: {err}");
            assert!(!err.to_string().contains(HEX));
        }
        let bad_scope = ImportLine::parse(&format!(
            r#"{{"sha256": "{HEX}", "name": "ci", "owner": "u1", "scopes": ["Bad Scope"]}}"#
        ));
        assert!(matches!(bad_scope, Err(ImportLineError::Scope(_))));
        let no_name = ImportLine::parse(&format!(
            r#"{{"sha256": "{HEX}", "name": "", "owner": "u1", "scopes": []}}"#
        ));
        assert!(matches!(no_name, Err(ImportLineError::Name)));
    }
}
