//! The application's scope catalog: declared scopes, implications between them, and roles.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use core::fmt;

use serde::Serialize;

use super::{Scope, ScopeError, ScopeSet};

/// Most scopes a catalog declares (implications count both ends).
const MAX_CATALOG_SCOPES: usize = 4096;
/// Most roles in a catalog.
const MAX_ROLES: usize = 256;
/// Longest role name, in bytes.
const MAX_ROLE_NAME_LEN: usize = 64;
/// Longest scope description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 512;

/// The scopes an application knows, what each implies, and named roles.
///
/// # Rules
/// - Implications are between concrete scopes, transitive, and a cycle makes its scopes
///   equivalent (each implies all the others).
/// - [`expand`](Self::expand) closes a set under the implications, once: the result holds
///   the set and everything implied by a declared scope the set grants. A wildcard grants
///   every declared scope strictly below its base, so `{tickets:*}` also gets what
///   `tickets:write` implies; `tickets:*` does not grant `tickets`, so not what `tickets`
///   implies either. `*` grants everything already.
/// - A closed set needs no catalog: [`ScopeSet::allows`] on it is the whole check. Union and
///   intersection of closed sets are closed, so the owner bound is
///   `expand(key) ∩ expand(owner)` and roles combine as `expand(a ∪ b)`.
/// - [`resolve`](Self::resolve) is a key's effective scopes: its own scopes and its roles'
///   scopes, expanded.
/// - A strict catalog refuses, at issuance, scopes it does not declare and wildcards that
///   cover no declared scope ([`validate`](Self::validate)); roles are always checked.
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
    /// Declared scope → everything else it implies (transitive closure), sorted.
    closure: BTreeMap<Scope, Box<[Scope]>>,
    /// Declared scope → what a person choosing it should read.
    descriptions: BTreeMap<Scope, Box<str>>,
    roles: BTreeMap<String, ScopeSet>,
    strict: bool,
}

/// Builds a [`ScopeCatalog`]; errors are reported by [`ScopeCatalogBuilder::build`].
///
/// ```
/// let catalog = keyward::ScopeCatalog::builder()
///     .scope("read")
///     .implies("comments", "read")
///     .strict(true)
///     .build()?;
/// assert!(catalog.contains(&"comments".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScopeCatalogBuilder {
    scopes: Vec<String>,
    implications: Vec<(String, String)>,
    descriptions: Vec<(String, String)>,
    roles: Vec<(String, Vec<String>)>,
    strict: bool,
}

/// Why a catalog could not be built, or why a request names something it does not know.
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
    /// A role name is empty or too long.
    #[error("invalid role name {0:?} (1 to {MAX_ROLE_NAME_LEN} bytes)")]
    InvalidRole(String),
    /// A role of a strict catalog names a scope the catalog does not declare.
    #[error("role {role:?} grants undeclared scope {scope:?}")]
    UndeclaredInRole {
        /// The role.
        role: String,
        /// The scope it names.
        scope: String,
    },
    /// Too many scopes or roles.
    #[error(
        "catalog too large (at most {MAX_CATALOG_SCOPES} scopes and {MAX_ROLES} roles, {} scopes per role)",
        super::MAX_SCOPES
    )]
    TooLarge,
    /// A scope description is longer than [`MAX_DESCRIPTION_LEN`] bytes.
    #[error("description of {0:?} too long (maximum {MAX_DESCRIPTION_LEN} bytes)")]
    DescriptionTooLong(String),
    /// Scopes or roles the catalog does not know, as listed by [`ScopeCatalog::unknown`].
    #[error("unknown scopes or roles: {0}")]
    Unknown(UnknownScopes),
}

impl ScopeCatalog {
    /// A builder.
    ///
    /// ```
    /// let empty = keyward::ScopeCatalog::builder().build()?;
    /// assert!(!empty.contains(&"read".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn builder() -> ScopeCatalogBuilder {
        ScopeCatalogBuilder::default()
    }

    /// Closes `set` under the implications: every declared scope the set grants (held
    /// exactly, or strictly below one of its wildcards) adds what it implies. Idempotent,
    /// and never removes anything.
    ///
    /// ```
    /// let catalog = keyward::ScopeCatalog::builder()
    ///     .implies("tickets:write", "read")
    ///     .build()?;
    /// let key = catalog.expand(&"tickets:*".parse()?);
    /// assert_eq!(key.to_string(), "read tickets:*");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn expand(&self, set: &ScopeSet) -> ScopeSet {
        if set.is_all() {
            return set.clone();
        }
        let mut exact = Vec::new();
        let mut wildcards = Vec::new();
        for scope in set {
            if let Some(base) = scope.wildcard_base() {
                for implied in self.declared_below(base).map(|(_, implied)| implied) {
                    exact.extend(implied.iter().cloned());
                }
                wildcards.push(scope.clone());
            } else {
                if let Some(implied) = self.closure.get(scope) {
                    exact.extend(implied.iter().cloned());
                }
                exact.push(scope.clone());
            }
        }
        ScopeSet::normalized(exact, wildcards)
    }

    /// Declared scopes strictly below `base`, with what they imply.
    fn declared_below<'a>(
        &'a self,
        base: &str,
    ) -> impl Iterator<Item = (&'a Scope, &'a [Scope])> + 'a {
        // Scopes starting with `base:` are contiguous in string order.
        let prefix = format!("{base}:");
        self.closure
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .map(|(scope, implied)| (scope, &**implied))
            .take_while(move |(scope, _)| scope.as_str().starts_with(&prefix))
    }

    /// A key's effective scopes: its scopes and the scopes of its roles, closed under the
    /// implications. Unknown roles grant nothing (issuance refuses them, see
    /// [`validate`](Self::validate)).
    ///
    /// ```
    /// let catalog = keyward::ScopeCatalog::builder()
    ///     .implies("plans:write", "plans:read")
    ///     .role("planner", ["plans:write"])
    ///     .role("viewer", ["reports:read"])
    ///     .build()?;
    /// let key = catalog.resolve(&Default::default(), &["planner".into(), "viewer".into()]);
    /// assert_eq!(key.to_string(), "plans:read plans:write reports:read");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn resolve(&self, scopes: &ScopeSet, roles: &[String]) -> ScopeSet {
        let combined = roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .fold(scopes.clone(), |acc, role| acc.union(role));
        self.expand(&combined)
    }

    /// The scopes of a role, if declared.
    ///
    /// ```
    /// let catalog = keyward::ScopeCatalog::builder().role("viewer", ["read"]).build()?;
    /// assert_eq!(catalog.role("viewer").map(ToString::to_string).as_deref(), Some("read"));
    /// assert!(catalog.role("admin").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn role(&self, name: &str) -> Option<&ScopeSet> {
        self.roles.get(name)
    }

    /// Whether `scope` is declared.
    ///
    /// ```
    /// let catalog = keyward::ScopeCatalog::builder().scope("read").build()?;
    /// assert!(catalog.contains(&"read".parse()?));
    /// assert!(!catalog.contains(&"write".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.closure.contains_key(scope)
    }

    /// Whether the catalog is strict.
    ///
    /// ```
    /// assert!(keyward::ScopeCatalog::builder().strict(true).build()?.is_strict());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// Unknown roles (as `role:<name>`) and, for a strict catalog, scopes that are not
    /// declared and wildcards that cover no declared scope (`*` is always known). Empty
    /// when all is known.
    ///
    /// ```
    /// let catalog = keyward::ScopeCatalog::builder().scope("read").strict(true).build()?;
    /// let unknown = catalog.unknown(&"read write".parse()?, &["admin".into()]);
    /// assert_eq!(unknown.to_string(), "role:admin, write");
    /// assert_eq!(unknown.roles(), ["admin"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn unknown(&self, scopes: &ScopeSet, roles: &[String]) -> UnknownScopes {
        let roles = roles
            .iter()
            .filter(|r| !self.roles.contains_key(*r))
            .cloned()
            .collect();
        let scopes = if self.strict {
            scopes.iter().filter(|s| !self.knows(s)).cloned().collect()
        } else {
            Vec::new()
        };
        UnknownScopes::new(roles, scopes)
    }

    /// Whether a scope is declared, or a wildcard covering a declared scope, or `*`.
    fn knows(&self, scope: &Scope) -> bool {
        match scope.wildcard_base() {
            None => self.closure.contains_key(scope),
            Some("") => true,
            Some(base) => self.declared_below(base).next().is_some(),
        }
    }

    /// Checks a request at issuance: every role must be declared and, for a strict catalog,
    /// every scope known (see [`unknown`](Self::unknown)).
    ///
    /// ```
    /// use keyward::{ScopeCatalog, scope::CatalogError};
    /// let catalog = ScopeCatalog::builder().scopes(["read", "tickets:write"]).strict(true).build()?;
    /// assert!(catalog.validate(&"read tickets:*".parse()?, &[]).is_ok());
    /// let err = catalog.validate(&"read billing:*".parse()?, &[]).unwrap_err();
    /// assert!(matches!(&err, CatalogError::Unknown(u) if u.scopes() == ["billing:*".parse()?]));
    /// assert_eq!(err.to_string(), "unknown scopes or roles: billing:*");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`CatalogError::Unknown`] naming every unknown scope and role.
    pub fn validate(&self, scopes: &ScopeSet, roles: &[String]) -> Result<(), CatalogError> {
        let unknown = self.unknown(scopes, roles);
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::Unknown(unknown))
        }
    }
    /// Everything the catalog declares, for a permission picker or an API that shows it:
    /// each scope (in scope order) with its description and everything it includes
    /// (transitively), and each role (in name order) with its scopes. Serializes as
    /// `{"scopes": [{"name", "description", "includes"}], "roles": [{"name", "scopes"}]}`.
    ///
    /// ```
    /// let catalog = keyward::ScopeCatalog::builder()
    ///     .describe("read", "read tickets and comments")
    ///     .describe("comments", "post comments")
    ///     .implies("comments", "read")
    ///     .implies("tickets:write", "comments")
    ///     .role("support", ["comments"])
    ///     .build()?;
    /// let listing = catalog.listing();
    /// let write = &listing.scopes[2];
    /// assert_eq!(write.name.as_str(), "tickets:write");
    /// assert_eq!(write.description, None);
    /// assert_eq!(write.includes, ["comments".parse()?, "read".parse()?]);
    /// assert_eq!(
    ///     serde_json::to_string(&listing.roles)?,
    ///     r#"[{"name":"support","scopes":["comments"]}]"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn listing(&self) -> CatalogListing {
        let scopes = self
            .closure
            .iter()
            .map(|(scope, implied)| ScopeEntry {
                name: scope.clone(),
                description: self.descriptions.get(scope).map(|d| d.to_string()),
                includes: implied.to_vec(),
            })
            .collect();
        let roles = self
            .roles
            .iter()
            .map(|(name, set)| RoleEntry {
                name: name.clone(),
                scopes: set.iter().cloned().collect(),
            })
            .collect();
        CatalogListing { scopes, roles }
    }
}

/// What a [`ScopeCatalog`] declares, from [`ScopeCatalog::listing`], in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CatalogListing {
    /// Every declared scope, in scope order.
    pub scopes: Vec<ScopeEntry>,
    /// Every role, in name order.
    pub roles: Vec<RoleEntry>,
}

/// One declared scope of a [`CatalogListing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ScopeEntry {
    /// The scope.
    pub name: Scope,
    /// Its description, if the catalog gives one.
    pub description: Option<String>,
    /// Everything holding it grants besides itself (transitively), in scope order.
    pub includes: Vec<Scope>,
}

/// One role of a [`CatalogListing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoleEntry {
    /// The role's name.
    pub name: String,
    /// The scopes it grants, as declared (wildcards included), in scope order.
    pub scopes: Vec<Scope>,
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

    /// Declares a scope with the text a person choosing it reads (a permission picker's
    /// label: "post comments; includes read"). At most [`MAX_DESCRIPTION_LEN`] bytes.
    #[must_use]
    pub fn describe(mut self, scope: impl Into<String>, description: impl Into<String>) -> Self {
        self.descriptions.push((scope.into(), description.into()));
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
    /// ```
    /// use keyward::{ScopeCatalog, scope::CatalogError};
    /// assert!(matches!(
    ///     ScopeCatalog::builder().scope("tickets:*").build(),
    ///     Err(CatalogError::Wildcard(_))
    /// ));
    /// ```
    ///
    /// # Errors
    /// [`CatalogError`] naming the first bad entry.
    pub fn build(self) -> Result<ScopeCatalog, CatalogError> {
        let parse = |s: &str| {
            Scope::new(s).map_err(|error| CatalogError::InvalidScope {
                scope: s.to_owned(),
                error,
            })
        };
        let concrete = |s: &str| -> Result<Scope, CatalogError> {
            let scope = parse(s)?;
            if scope.is_wildcard() {
                return Err(CatalogError::Wildcard(s.to_owned()));
            }
            Ok(scope)
        };
        if self.scopes.len() + 2 * self.implications.len() + self.descriptions.len()
            > MAX_CATALOG_SCOPES
            || self.roles.len() > MAX_ROLES
        {
            return Err(CatalogError::TooLarge);
        }
        let mut declared: BTreeSet<Scope> = BTreeSet::new();
        let mut edges: BTreeMap<Scope, BTreeSet<Scope>> = BTreeMap::new();
        for s in &self.scopes {
            declared.insert(concrete(s)?);
        }
        let mut descriptions = BTreeMap::new();
        for (s, text) in self.descriptions {
            let scope = concrete(&s)?;
            if text.len() > MAX_DESCRIPTION_LEN {
                return Err(CatalogError::DescriptionTooLong(s));
            }
            declared.insert(scope.clone());
            descriptions.insert(scope, text.into_boxed_str());
        }
        for (from, to) in &self.implications {
            let (from, to) = (concrete(from)?, concrete(to)?);
            declared.insert(from.clone());
            declared.insert(to.clone());
            if from != to {
                edges.entry(from).or_default().insert(to);
            }
        }
        // One search per declared scope; a cycle reaches back to its start, which is left
        // out (a scope trivially grants itself).
        let mut closure = BTreeMap::new();
        for start in &declared {
            let mut seen: BTreeSet<&Scope> = BTreeSet::from([start]);
            let mut stack = vec![start];
            while let Some(s) = stack.pop() {
                for next in edges.get(s).into_iter().flatten() {
                    if seen.insert(next) {
                        stack.push(next);
                    }
                }
            }
            seen.remove(start);
            let implied: Box<[Scope]> = seen.into_iter().cloned().collect();
            closure.insert(start.clone(), implied);
        }
        let mut catalog = ScopeCatalog {
            closure,
            descriptions,
            roles: BTreeMap::new(),
            strict: self.strict,
        };
        for (name, members) in self.roles {
            if name.is_empty() || name.len() > MAX_ROLE_NAME_LEN {
                return Err(CatalogError::InvalidRole(name));
            }
            if members.len() > super::MAX_SCOPES {
                return Err(CatalogError::TooLarge);
            }
            let mut scopes = Vec::with_capacity(members.len());
            for m in &members {
                let scope = parse(m)?;
                if catalog.strict && !catalog.knows(&scope) {
                    return Err(CatalogError::UndeclaredInRole {
                        role: name,
                        scope: m.clone(),
                    });
                }
                scopes.push(scope);
            }
            let set = ScopeSet::from_scopes(scopes).map_err(|_| CatalogError::TooLarge)?;
            catalog.roles.insert(name, set);
        }
        Ok(catalog)
    }
}

/// Roles and scopes a [`ScopeCatalog`] does not know, as
/// [`ScopeCatalog::unknown`] finds them: roles it does not
/// declare, and, for a strict catalog, scopes it does not declare and wildcards that cover
/// none of its scopes. Shown as a list, roles first (as `role:<name>`).
///
/// ```
/// let catalog = keyward::ScopeCatalog::builder().scope("read").strict(true).build()?;
/// let unknown = catalog.unknown(&"read write".parse()?, &["admin".into()]);
/// assert_eq!(unknown.roles(), ["admin"]);
/// assert_eq!(unknown.scopes(), ["write".parse()?]);
/// assert_eq!(unknown.to_string(), "role:admin, write");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnknownScopes {
    roles: Vec<String>,
    scopes: Vec<Scope>,
}

impl UnknownScopes {
    pub(crate) fn new(roles: Vec<String>, scopes: Vec<Scope>) -> Self {
        Self { roles, scopes }
    }

    /// The unknown roles, in the order asked for.
    #[must_use]
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The unknown scopes, in the scope set's order.
    #[must_use]
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Whether everything is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.scopes.is_empty()
    }
}

impl fmt::Display for UnknownScopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles = self.roles.iter().map(|r| format!("role:{r}"));
        let scopes = self.scopes.iter().map(ToString::to_string);
        let all: Vec<String> = roles.chain(scopes).collect();
        f.write_str(&all.join(", "))
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
        assert_eq!(unknown.to_string(), "role:nope, write, x:*");
        assert_eq!(unknown.roles(), ["nope"]);
        assert!(ScopeCatalog::builder().scope("a:*").build().is_err());
        assert_eq!(
            ScopeCatalog::builder()
                .scope("read")
                .role("r", ["read", "write"])
                .strict(true)
                .build(),
            Err(CatalogError::UndeclaredInRole {
                role: "r".into(),
                scope: "write".into()
            })
        );
    }

    #[test]
    fn wildcard_does_not_grant_its_base_or_its_implications() {
        let c = ScopeCatalog::builder()
            .implies("tickets", "admin")
            .implies("tickets:write", "read")
            .implies("ticketsx:write", "billing")
            .build()
            .expect("catalog");
        let e = c.expand(&"tickets:*".parse().expect("set"));
        assert_eq!(e.to_string(), "read tickets:*");
    }

    #[test]
    fn large_cycle_builds() {
        let names: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
        let mut b = ScopeCatalog::builder();
        for pair in names.windows(2) {
            b = b.implies(pair[0].clone(), pair[1].clone());
        }
        let c = b.implies("s299", "s0").build().expect("catalog");
        let e = c.expand(&"s150".parse().expect("set"));
        assert_eq!(e.len(), 300);
    }
}
