//! Verification of legacy tokens: keys of another system, imported by their digest
//! ([`KeyManager::import`]) and recognised by a prefix configured with
//! [`KeyManager::with_legacy`].
//!
//! The token's digest is computed as the other system did (SHA-256 of the whole token, or
//! of a prefixed-api-key token's long part), the record is looked up by the id derived
//! from that digest under each accepted pepper, and the stored hash is checked in constant
//! time: the peppered foreign digest before the first use, the current settings' hash
//! after it (the first success upgrades the record, [`KeyManager::accept`]). An unknown
//! token costs the same work: the same lookups and one HMAC.

use std::sync::Arc;

use super::KeyManager;
use super::verify::VerifyError;
use crate::key::legacy::LegacyToken;
use crate::record::KeyRecord;
use crate::store::{KeyStore, StoreError};
use crate::verified::Verified;

impl<S: KeyStore> KeyManager<S> {
    pub(super) async fn verify_legacy(
        &self,
        token: LegacyToken<'_>,
        client: Option<std::net::IpAddr>,
        now: time::OffsetDateTime,
    ) -> Result<Verified, (VerifyError, Option<Arc<KeyRecord>>)> {
        match self.match_legacy(&token).await {
            Ok(Some(record)) => {
                self.accept(record, token.expose_secret(), client, now)
                    .await
            }
            Ok(None) => Err((VerifyError::Invalid, None)),
            Err(e) => Err((VerifyError::Unavailable(Box::new(e)), None)),
        }
    }

    /// The record of an imported key whose legacy token this is, `None` when no record
    /// matches (unknown, or the token is wrong), after the same work either way.
    pub(crate) async fn match_legacy(
        &self,
        token: &LegacyToken<'_>,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let key = token.foreign_key();
        // One lookup per accepted pepper, whatever is found, so that the work does not say
        // which pepper (if any) the key was imported under.
        let mut found: Option<Arc<KeyRecord>> = None;
        for id in self.hasher.foreign_ids(&key) {
            if let Some(record) = self.store.get(&id).await? {
                // Should a token have records under two peppers, a revoked one wins:
                // revocation is final, whichever record a scanner or an operator found.
                let revoked = record.status == crate::record::KeyStatus::Revoked;
                if found.is_none() || revoked {
                    found = Some(record);
                }
            }
        }
        let Some(record) = found else {
            self.hasher.foreign_absent(&key);
            return Ok(None);
        };
        let matched = if record.hash.is_foreign() {
            self.hasher.verify_foreign(&key, &record.hash)
        } else {
            // Upgraded by an earlier verification: the whole token, like a keyward key. Under
            // an Argon2id hasher this costs an Argon2id run where an unknown token costs one
            // HMAC; that says nothing to a guesser: the id is derived from the token's own
            // digest, so only the right token (or, for a prefixed-api-key token, the right
            // long part) finds the record at all.
            self.hasher
                .verify_secret(token.expose_secret(), record.id, &record.hash)
        };
        Ok(matched.is_ok().then_some(record))
    }
}
