//! Scope sets and their algebra: allows, union, intersection, subset.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Scope, ScopeError, is_below};

/// Most scopes in one set.
pub const MAX_SCOPES: usize = 256;

/// A normalized set of scopes, meaning the set of concrete scopes it grants.
///
/// Normal form: `*` alone if present; otherwise exact scopes and wildcards, each sorted,
/// without duplicates, without anything a wildcard of the set already grants. Two sets that
/// grant the same scopes without a catalog compare equal.
///
/// Text form: scopes separated by spaces (as OAuth's `scope` parameter) or commas; `Display`
/// writes them space-separated. Serde form: a list of strings.
///
/// ```
/// use keyward::ScopeSet;
/// let key: ScopeSet = "tickets:* read".parse()?;
/// let owner: ScopeSet = "tickets:write billing:read".parse()?;
/// let effective = key.intersection(&owner);
/// assert_eq!(effective.to_string(), "tickets:write");
/// assert!(effective.allows(&"tickets:write".parse()?));
/// assert!(!effective.allows(&"read".parse()?));
/// # Ok::<(), keyward::ScopeError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet {
    all: bool,
    /// Concrete scopes, sorted.
    exact: Vec<Scope>,
    /// Wildcard bases (`tickets` for `tickets:*`), sorted, none below another.
    wildcards: Vec<Box<str>>,
}

impl ScopeSet {
    /// The empty set (grants nothing).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The set granting everything (`*`).
    #[must_use]
    pub fn all() -> Self {
        Self {
            all: true,
            exact: Vec::new(),
            wildcards: Vec::new(),
        }
    }

    /// Builds a normalized set.
    ///
    /// # Errors
    /// [`ScopeError::TooMany`] beyond [`MAX_SCOPES`].
    pub fn from_scopes<I: IntoIterator<Item = Scope>>(scopes: I) -> Result<Self, ScopeError> {
        let mut all = false;
        let mut exact = Vec::new();
        let mut wildcards = Vec::new();
        for (n, scope) in scopes.into_iter().enumerate() {
            if n >= MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
            match scope.wildcard_base() {
                Some("") => all = true,
                Some(base) => wildcards.push(Box::from(base)),
                None => exact.push(scope),
            }
        }
        Ok(Self::normalized(all, exact, wildcards))
    }

    fn normalized(all: bool, mut exact: Vec<Scope>, mut wildcards: Vec<Box<str>>) -> Self {
        if all {
            return Self::all();
        }
        wildcards.sort_unstable();
        wildcards.dedup();
        // Sorted order puts `a` before `a:b`, so a wildcard below a kept one follows it.
        let mut kept: Vec<Box<str>> = Vec::with_capacity(wildcards.len());
        for w in wildcards {
            if !kept.iter().any(|k| is_below(&w, k)) {
                kept.push(w);
            }
        }
        exact.sort_unstable();
        exact.dedup();
        exact.retain(|s| !kept.iter().any(|k| is_below(s.as_str(), k)));
        Self {
            all: false,
            exact,
            wildcards: kept,
        }
    }

    /// Whether the set grants `scope`. A wildcard argument is granted when every scope it
    /// stands for is.
    #[must_use]
    pub fn allows(&self, scope: &Scope) -> bool {
        if self.all {
            return true;
        }
        match scope.wildcard_base() {
            None => {
                let s = scope.as_str();
                self.exact.binary_search(scope).is_ok()
                    || self.wildcards.iter().any(|w| is_below(s, w))
            }
            Some("") => false,
            Some(base) => self
                .wildcards
                .iter()
                .any(|w| **w == *base || is_below(base, w)),
        }
    }

    /// Whether the set grants every scope of `scopes`.
    #[must_use]
    pub fn allows_all<'a>(&self, scopes: impl IntoIterator<Item = &'a Scope>) -> bool {
        scopes.into_iter().all(|s| self.allows(s))
    }

    /// Scopes granted by either set (roles combined).
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        let exact = self.exact.iter().chain(&other.exact).cloned().collect();
        let wildcards = self
            .wildcards
            .iter()
            .chain(&other.wildcards)
            .cloned()
            .collect();
        Self::normalized(self.all || other.all, exact, wildcards)
    }

    /// Scopes granted by both sets (attenuation, the owner bound). Never wider than either.
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        if self.all {
            return other.clone();
        }
        if other.all {
            return self.clone();
        }
        let mut exact: Vec<Scope> = self
            .exact
            .iter()
            .filter(|s| other.allows(s))
            .cloned()
            .collect();
        exact.extend(other.exact.iter().filter(|s| self.allows(s)).cloned());
        let mut wildcards = Vec::new();
        for a in &self.wildcards {
            for b in &other.wildcards {
                if a == b || is_below(b, a) {
                    wildcards.push(b.clone());
                } else if is_below(a, b) {
                    wildcards.push(a.clone());
                }
            }
        }
        Self::normalized(false, exact, wildcards)
    }

    /// Whether every scope this set grants is granted by `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        if other.all {
            return true;
        }
        if self.all {
            return false;
        }
        self.exact.iter().all(|s| other.allows(s))
            && self
                .wildcards
                .iter()
                .all(|w| other.wildcards.iter().any(|o| o == w || is_below(w, o)))
    }

    /// Whether the set grants nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.all && self.exact.is_empty() && self.wildcards.is_empty()
    }

    /// Whether the set grants everything (`*`).
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Number of entries in normal form.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.all) + self.exact.len() + self.wildcards.len()
    }

    /// The entries in normal form: `*`, then exact scopes, then wildcards.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        let all = self.all.then(|| Scope("*".into()));
        let wildcards = self
            .wildcards
            .iter()
            .map(|w| Scope(format!("{w}:*").into()));
        all.into_iter()
            .chain(self.exact.iter().cloned())
            .chain(wildcards)
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = s.split([' ', ',']).filter(|p| !p.is_empty());
        // Count before validating anything, so huge inputs are refused in one pass.
        if parts.clone().nth(MAX_SCOPES).is_some() {
            return Err(ScopeError::TooMany);
        }
        let scopes: Result<Vec<Scope>, ScopeError> = parts.map(Scope::new).collect();
        Self::from_scopes(scopes?)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeSet({self})")
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(|s| s.0))
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<Scope>::deserialize(deserializer)?;
        Self::from_scopes(list).map_err(serde::de::Error::custom)
    }
}

impl FromIterator<Scope> for Result<ScopeSet, ScopeError> {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        ScopeSet::from_scopes(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        s.parse().expect("valid set")
    }

    #[test]
    fn normalization() {
        assert_eq!(set("b a a").to_string(), "a b");
        assert_eq!(
            set("tickets:write tickets:* tickets:a:*").to_string(),
            "tickets:*"
        );
        assert_eq!(set("read, * tickets:*").to_string(), "*");
        assert_eq!(set("tickets tickets:*").to_string(), "tickets tickets:*");
        assert_eq!(set(""), ScopeSet::new());
    }

    #[test]
    fn algebra_examples() {
        assert_eq!(
            set("tickets:*").intersection(&set("tickets:write")),
            set("tickets:write")
        );
        assert_eq!(set("*").intersection(&set("a b:*")), set("a b:*"));
        assert_eq!(
            set("tickets:*").intersection(&set("tickets:comments:*")),
            set("tickets:comments:*")
        );
        assert_eq!(set("a:*").intersection(&set("b:*")), ScopeSet::new());
        assert_eq!(
            set("tickets:*").intersection(&set("tickets")),
            ScopeSet::new()
        );
        assert!(set("tickets:write").is_subset(&set("tickets:*")));
        assert!(!set("tickets").is_subset(&set("tickets:*")));
        assert!(set("a:b:*").is_subset(&set("a:*")));
        assert!(!set("*").is_subset(&set("a:*")));
    }

    #[test]
    fn too_many_is_refused_fast() {
        let huge = "a ".repeat(10_000);
        assert_eq!(huge.parse::<ScopeSet>(), Err(ScopeError::TooMany));
    }

    #[test]
    fn serde_list_of_strings() {
        let s = set("read tickets:*");
        let json = serde_json::to_string(&s).expect("serialize");
        assert_eq!(json, r#"["read","tickets:*"]"#);
        assert_eq!(
            serde_json::from_str::<ScopeSet>(&json).expect("deserialize"),
            s
        );
        assert!(serde_json::from_str::<ScopeSet>(r#"["Bad"]"#).is_err());
    }
}
