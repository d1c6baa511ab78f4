//! The application's scope catalog: declared scopes, implications between them, and roles.

use std::collections::{BTreeMap, BTreeSet};

use super::{Scope, ScopeError, ScopeSet};

/// The scopes an application knows, what each implies, and named roles.
///
/// Implications are transitive, and a cycle makes its scopes equivalent. A wildcard in a
/// key's scopes implies whatever every declared scope it covers implies.
///
/// ```
/// use keyward::ScopeCatalog;
/// let catalog = ScopeCatalog::builder()
///     .scopes(["read", "comments", "tickets:write", "tickets:assign"])
///     .implies("comments", "read")
///     .implies("tickets:write", "comments")
///     .implies("tickets:assign", "read")
///     .role("support", ["comments", "tickets:assign"])
///     .build()?;
/// let key = catalog.expand(&"tickets:write".parse()?);
/// assert!(key.allows(&"read".parse()?));
/// assert!(!key.allows(&"tickets:assign".parse()?));
/// let support = catalog.resolve(&Default::default(), &["support".to_owned()]);
/// assert_eq!(support.to_string(), "comments read tickets:assign");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCatalog {
    /// Declared scope → everything it implies, itself included (transitive closure).
    closure: BTreeMap<Scope, ScopeSet>,
    roles: BTreeMap<String, ScopeSet>,
    strict: bool,
}

/// Builds a [`ScopeCatalog`]; errors are reported by [`ScopeCatalogBuilder::build`].
#[derive(Debug, Clone, Default)]
pub struct ScopeCatalogBuilder {
    scopes: Vec<String>,
    implications: Vec<(String, String)>,
    roles: Vec<(String, Vec<String>)>,
    strict: bool,
}

/// Why a catalog could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A declared scope, implication or role member is not a valid scope.
    #[error("invalid scope {scope:?} in the catalog: {error}")]
    InvalidScope {
        /// The offending text.
        scope: String,
        /// What is wrong with it.
        error: ScopeError,
    },
    /// Catalog entries must be concrete scopes.
    #[error(
        "wildcard {0:?} cannot be declared or implied in a catalog (use it in key scopes or roles)"
    )]
    Wildcard(String),
    /// A role name is empty or longer than 64 bytes.
    #[error("invalid role name {0:?} (1 to 64 bytes)")]
    InvalidRole(String),
    /// Too many scopes or roles.
    #[error("catalog too large (at most 4096 scopes and 256 roles)")]
    TooLarge,
}

impl ScopeCatalog {
    /// A builder.
    #[must_use]
    pub fn builder() -> ScopeCatalogBuilder {
        ScopeCatalogBuilder::default()
    }

    /// Closes `set` under the implications: every declared scope the set grants adds what it
    /// implies.
    #[must_use]
    pub fn expand(&self, set: &ScopeSet) -> ScopeSet {
        if set.is_all() {
            return set.clone();
        }
        let mut out = set.clone();
        for (scope, implied) in &self.closure {
            if set.allows(scope) {
                out = out.union(implied);
            }
        }
        out
    }

    /// A key's effective scopes: its scopes and the scopes of its roles, closed under the
    /// implications. Unknown roles grant nothing.
    #[must_use]
    pub fn resolve(&self, scopes: &ScopeSet, roles: &[String]) -> ScopeSet {
        let combined = roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .fold(scopes.clone(), |acc, role| acc.union(role));
        self.expand(&combined)
    }

    /// The scopes of a role, if declared.
    #[must_use]
    pub fn role(&self, name: &str) -> Option<&ScopeSet> {
        self.roles.get(name)
    }

    /// Whether `scope` is declared.
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.closure.contains_key(scope)
    }

    /// Unknown roles (as `role:<name>`) and, for a strict catalog, scopes that are not
    /// declared and wildcards that cover no declared scope. Empty when all is known.
    #[must_use]
    pub fn unknown(&self, scopes: &ScopeSet, roles: &[String]) -> Vec<String> {
        let mut out: Vec<String> = roles
            .iter()
            .filter(|r| !self.roles.contains_key(*r))
            .map(|r| format!("role:{r}"))
            .collect();
        if self.strict {
            for s in scopes.iter() {
                let known = if s.is_wildcard() {
                    s.as_str() == "*" || self.closure.keys().any(|d| s.grants(d))
                } else {
                    self.closure.contains_key(&s)
                };
                if !known {
                    out.push(s.to_string());
                }
            }
        }
        out
    }
}

impl ScopeCatalogBuilder {
    /// Declares a scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Declares several scopes.
    #[must_use]
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Declares that holding `scope` also grants `implied` (both are declared by this).
    #[must_use]
    pub fn implies(mut self, scope: impl Into<String>, implied: impl Into<String>) -> Self {
        self.implications.push((scope.into(), implied.into()));
        self
    }

    /// Declares a role: a named bundle of scopes (wildcards allowed).
    #[must_use]
    pub fn role<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        name: impl Into<String>,
        scopes: I,
    ) -> Self {
        self.roles
            .push((name.into(), scopes.into_iter().map(Into::into).collect()));
        self
    }

    /// Makes the catalog strict: issuance refuses scopes it does not declare.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Validates everything and computes the transitive closure of the implications.
    ///
    /// # Errors
    /// [`CatalogError`] naming the first bad entry.
    pub fn build(self) -> Result<ScopeCatalog, CatalogError> {
        let concrete = |s: &str| -> Result<Scope, CatalogError> {
            let scope = Scope::new(s).map_err(|error| CatalogError::InvalidScope {
                scope: s.to_owned(),
                error,
            })?;
            if scope.is_wildcard() {
                return Err(CatalogError::Wildcard(s.to_owned()));
            }
            Ok(scope)
        };
        if self.scopes.len() + 2 * self.implications.len() > 4096 || self.roles.len() > 256 {
            return Err(CatalogError::TooLarge);
        }
        let mut declared: BTreeSet<Scope> = BTreeSet::new();
        let mut edges: BTreeMap<Scope, BTreeSet<Scope>> = BTreeMap::new();
        for s in &self.scopes {
            declared.insert(concrete(s)?);
        }
        for (from, to) in &self.implications {
            let (from, to) = (concrete(from)?, concrete(to)?);
            declared.insert(from.clone());
            declared.insert(to.clone());
            edges.entry(from).or_default().insert(to);
        }
        let mut closure = BTreeMap::new();
        for start in &declared {
            let mut seen: BTreeSet<Scope> = BTreeSet::from([start.clone()]);
            let mut stack = vec![start.clone()];
            while let Some(s) = stack.pop() {
                for next in edges.get(&s).into_iter().flatten() {
                    if seen.insert(next.clone()) {
                        stack.push(next.clone());
                    }
                }
            }
            let set = ScopeSet::from_scopes(seen).map_err(|error| CatalogError::InvalidScope {
                scope: start.to_string(),
                error,
            })?;
            closure.insert(start.clone(), set);
        }
        let mut roles = BTreeMap::new();
        for (name, members) in self.roles {
            if name.is_empty() || name.len() > 64 {
                return Err(CatalogError::InvalidRole(name));
            }
            let mut scopes = Vec::new();
            for m in &members {
                scopes.push(Scope::new(m).map_err(|error| CatalogError::InvalidScope {
                    scope: m.clone(),
                    error,
                })?);
            }
            let set =
                ScopeSet::from_scopes(scopes).map_err(|error| CatalogError::InvalidScope {
                    scope: name.clone(),
                    error,
                })?;
            roles.insert(name, set);
        }
        Ok(ScopeCatalog {
            closure,
            roles,
            strict: self.strict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_mean_equivalence() {
        let c = ScopeCatalog::builder()
            .implies("a", "b")
            .implies("b", "c")
            .implies("c", "a")
            .build()
            .expect("catalog");
        for s in ["a", "b", "c"] {
            assert_eq!(c.expand(&s.parse().expect("set")).to_string(), "a b c");
        }
    }

    #[test]
    fn wildcards_carry_implications() {
        let c = ScopeCatalog::builder()
            .implies("tickets:write", "read")
            .build()
            .expect("catalog");
        let e = c.expand(&"tickets:*".parse().expect("set"));
        assert!(e.allows(&"read".parse().expect("scope")));
    }

    #[test]
    fn strict_names_unknown_scopes_and_roles() {
        let c = ScopeCatalog::builder()
            .scopes(["read"])
            .role("r", ["read"])
            .strict(true)
            .build()
            .expect("catalog");
        let unknown = c.unknown(
            &"read write x:*".parse().expect("set"),
            &["r".into(), "nope".into()],
        );
        assert_eq!(
            unknown,
            vec!["role:nope".to_owned(), "write".to_owned(), "x:*".to_owned()]
        );
        assert!(ScopeCatalog::builder().scope("a:*").build().is_err());
    }
}
