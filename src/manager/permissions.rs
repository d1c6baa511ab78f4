//! A simple owner-permission source backed by an in-memory table.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, PoisonError, RwLock};

use super::{BoxFuture, OwnerPermissions};
use crate::scope::ScopeSet;

/// Owner permissions kept in memory; clones share the table, so the application can change
/// an owner's permissions while the manager runs. Unknown owners have no permissions.
#[derive(Debug, Clone, Default)]
pub struct PermissionTable {
    table: Arc<RwLock<HashMap<String, ScopeSet>>>,
}

impl PermissionTable {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an owner's permissions.
    pub fn set(&self, owner: impl Into<String>, scopes: ScopeSet) {
        self.table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(owner.into(), scopes);
    }

    /// Removes an owner (their keys then allow nothing).
    pub fn remove(&self, owner: &str) {
        self.table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(owner);
    }
}

impl OwnerPermissions for PermissionTable {
    fn permissions<'a>(
        &'a self,
        owner: &'a str,
        _tenant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ScopeSet, Box<dyn StdError + Send + Sync>>> {
        let scopes = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(owner)
            .cloned()
            .unwrap_or_default();
        Box::pin(core::future::ready(Ok(scopes)))
    }
}
