//! Scope sets and their algebra: allows, union, intersection, subset.

use core::cmp::Ordering;
use core::fmt;
use core::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Scope, ScopeError, is_below, segment_order};

/// Most scopes in a set read from outside: [`ScopeSet::from_scopes`], [`FromStr`] and serde
/// refuse more, counting entries before duplicates are removed.
///
/// The limit bounds untrusted input. Results of [`ScopeSet::union`] and of
/// [`ScopeCatalog::expand`](crate::ScopeCatalog::expand) may hold more; store what was
/// requested (key scopes, role names) rather than such results.
pub const MAX_SCOPES: usize = 256;

/// A normalized set of scopes, meaning the set of concrete scopes it grants.
///
/// Normal form: `*` alone if present; otherwise concrete scopes and wildcards, each sorted,
/// without duplicates and without anything a wildcard of the set already grants. Two sets
/// that grant the same scopes compare equal, whatever order or redundancy they were written
/// with. Implications are not part of a set; see
/// [`ScopeCatalog::expand`](crate::ScopeCatalog::expand).
///
/// Text form: scopes separated by spaces (as OAuth's `scope` parameter) or commas;
/// `Display` writes the normal form, space-separated, concrete scopes first. Serde form: a
/// list of strings.
///
/// [`allows`](Self::allows) does not allocate: a look-up among the concrete scopes (a scan
/// of a small set, a hash index built with a larger one), then a binary search among the
/// wildcards (kept in an order where each wildcard is followed by what lies below it, so the
/// only candidate is the nearest one at or before the scope).
/// Scopes are reference-counted, so set operations copy pointers, not strings.
///
/// ```
/// use keyward::ScopeSet;
/// let key: ScopeSet = "tickets:* read".parse()?;
/// let owner: ScopeSet = "tickets:write billing:read".parse()?;
/// let effective = key.intersection(&owner);
/// assert_eq!(effective.to_string(), "tickets:write");
/// assert!(effective.allows(&"tickets:write".parse()?));
/// assert!(!effective.allows(&"read".parse()?));
/// # Ok::<(), keyward::scope::ScopeError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet {
    /// Shared: a clone copies one pointer, and stores keep one copy of each distinct set
    /// however many keys hold it (see [`crate::MemoryStore`]). Immutable once built.
    parts: Arc<Parts>,
}

#[derive(Default)]
struct Parts {
    /// Concrete scopes, sorted, none granted by a wildcard of the set.
    exact: Vec<Scope>,
    /// Wildcards sorted by base in [`segment_order`], none granted by another. `[*]` when
    /// the set grants all.
    wildcards: Vec<Scope>,
    /// Finds an entry of `exact` by hash when the set is too large to scan.
    index: ExactIndex,
}

// Equality and hashing by hand, over the normal form only: `index` is derived from `exact`
// (two equal sets may even carry different hash seeds), so it has no part in a set's
// identity, and `ExactIndex` itself has no equality at all.
impl PartialEq for Parts {
    fn eq(&self, other: &Self) -> bool {
        self.exact == other.exact && self.wildcards == other.wildcards
    }
}

impl Eq for Parts {}

impl core::hash::Hash for Parts {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.exact.hash(state);
        self.wildcards.hash(state);
    }
}

/// Scans of more concrete scopes than this go through [`ExactIndex`].
const SCAN_LIMIT: usize = 8;

/// A hash index over the concrete scopes of a set (positions in [`Parts::exact`]), built
/// once when the set is: a lookup hashes the scope once and usually compares one string,
/// where a binary search over 32 scopes compares five. Sets of at most [`SCAN_LIMIT`] scopes
/// have none (a scan is cheaper). Derived from `exact`, so it takes no part in equality or
/// hashing (see the impls on [`Parts`]; it has no `PartialEq` of its own).
///
/// It buys BENCHMARKS.md, Scopes: "`allows`, granted exactly" and "`allows`, refused (depth
/// 3)" (target ≤ 50 ns), and "`allows`, granted by a wildcard (depth 4)", which looks for
/// the exact scope first; without it all three ran about 3x slower when measured for issue 19.
#[derive(Default)]
struct ExactIndex {
    hasher: hashbrown::DefaultHashBuilder,
    /// Positions in `exact`; empty when the set is scanned instead.
    positions: hashbrown::HashTable<u16>,
}

impl ExactIndex {
    fn build(exact: &[Scope]) -> Self {
        let mut index = Self::default();
        // Sets are bounded far below `u16::MAX` scopes; a larger one would just be scanned.
        if exact.len() <= SCAN_LIMIT || exact.len() > usize::from(u16::MAX) {
            return index;
        }
        let hash = |s: &str| core::hash::BuildHasher::hash_one(&index.hasher, s);
        let rehash = |&p: &u16| exact.get(usize::from(p)).map_or(0, |s| hash(s.as_str()));
        let mut positions = hashbrown::HashTable::with_capacity(exact.len());
        for (position, scope) in (0..u16::MAX).zip(exact) {
            positions.insert_unique(hash(scope.as_str()), position, rehash);
        }
        index.positions = positions;
        index
    }

    /// Whether `scope` is in `exact`; `None` when there is no index.
    fn contains(&self, exact: &[Scope], scope: &str) -> Option<bool> {
        if self.positions.is_empty() {
            return None;
        }
        let hash = core::hash::BuildHasher::hash_one(&self.hasher, scope);
        let found = self.positions.find(hash, |&p| {
            exact
                .get(usize::from(p))
                .is_some_and(|e| e.as_str() == scope)
        });
        Some(found.is_some())
    }
}

impl Parts {
    /// Whether a wildcard of the set covers everything strictly below `scope`, or, when
    /// `inclusive`, sits at `scope` itself. Ignores `*` (checked by [`ScopeSet::is_all`]).
    fn wildcard_covers(&self, scope: &str, inclusive: bool) -> bool {
        // The greatest base at or before `scope` is the only candidate.
        let at = match self
            .wildcards
            .binary_search_by(|w| segment_order(base(w), scope))
        {
            Ok(_) => return inclusive,
            Err(at) => at,
        };
        at.checked_sub(1)
            .and_then(|i| self.wildcards.get(i))
            .is_some_and(|w| is_below(scope, base(w)))
    }
}

/// The base of a wildcard (`tickets` for `tickets:*`, `""` for `*`).
fn base(wildcard: &Scope) -> &str {
    wildcard.wildcard_base().unwrap_or_default()
}

impl ScopeSet {
    /// The empty set (grants nothing).
    ///
    /// ```
    /// assert!(keyward::ScopeSet::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The set granting everything (`*`), such as a Tooken management key.
    ///
    /// ```
    /// let all = keyward::ScopeSet::all();
    /// assert!(all.allows(&"tokens:revoke".parse()?));
    /// assert_eq!(all.to_string(), "*");
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn all() -> Self {
        Self {
            parts: Arc::new(Parts {
                exact: Vec::new(),
                wildcards: vec![Scope::all()],
                index: ExactIndex::default(),
            }),
        }
    }

    /// Builds a normalized set.
    ///
    /// ```
    /// use keyward::{Scope, ScopeSet};
    /// let set = ScopeSet::from_scopes(["tickets:write", "tickets:*"].map(Scope::new).into_iter().collect::<Result<Vec<_>, _>>()?)?;
    /// assert_eq!(set.to_string(), "tickets:*");
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    ///
    /// # Errors
    /// [`ScopeError::TooMany`] beyond [`MAX_SCOPES`] entries, duplicates included.
    pub fn from_scopes<I: IntoIterator<Item = Scope>>(scopes: I) -> Result<Self, ScopeError> {
        let mut exact = Vec::new();
        let mut wildcards = Vec::new();
        for (n, scope) in scopes.into_iter().enumerate() {
            if n >= MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
            if scope.is_wildcard() {
                wildcards.push(scope);
            } else {
                exact.push(scope);
            }
        }
        Ok(Self::normalized(exact, wildcards))
    }

    /// Puts scopes into normal form (no size limit: internal results may exceed it).
    pub(crate) fn normalized(mut exact: Vec<Scope>, mut wildcards: Vec<Scope>) -> Self {
        if wildcards.iter().any(|w| base(w).is_empty()) {
            return Self::all();
        }
        wildcards.sort_unstable_by(|a, b| segment_order(base(a), base(b)));
        wildcards.dedup();
        // In segment order a wildcard's ancestors come before it, and only the nearest kept
        // one can cover it.
        let mut parts = Parts {
            exact: Vec::new(),
            wildcards: Vec::with_capacity(wildcards.len()),
            index: ExactIndex::default(),
        };
        for w in wildcards {
            if !parts.wildcard_covers(base(&w), false) {
                parts.wildcards.push(w);
            }
        }
        exact.sort_unstable();
        exact.dedup();
        exact.retain(|s| !parts.wildcard_covers(s.as_str(), false));
        parts.index = ExactIndex::build(&exact);
        parts.exact = exact;
        Self {
            parts: Arc::new(parts),
        }
    }

    /// Whether a wildcard of the set covers everything strictly below `scope`, or, when
    /// `inclusive`, sits at `scope` itself. Ignores `*` (checked by [`Self::is_all`]).
    fn wildcard_covers(&self, scope: &str, inclusive: bool) -> bool {
        self.parts.wildcard_covers(scope, inclusive)
    }

    /// Whether another copy of this set exists (a store's interner drops sets it alone
    /// holds).
    pub(crate) fn is_shared(&self) -> bool {
        Arc::strong_count(&self.parts) > 1
    }

    /// Whether the set grants `scope`. A wildcard argument is granted when every scope it
    /// stands for is, that is, when the set holds that wildcard or a wider one.
    ///
    /// ```
    /// use keyward::{Scope, ScopeSet};
    /// let set: ScopeSet = "read tickets:*".parse()?;
    /// assert!(set.allows(&"tickets:comments:write".parse()?));
    /// assert!(set.allows(&"tickets:comments:*".parse()?));
    /// assert!(!set.allows(&"tickets".parse()?));
    /// assert!(!set.allows(&"*".parse()?));
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn allows(&self, scope: &Scope) -> bool {
        if self.is_all() {
            return true;
        }
        match scope.wildcard_base() {
            None => {
                let s = scope.as_str();
                let exact = &self.parts.exact;
                // A key holds a handful of scopes: comparing each for equality (lengths
                // first) is cheaper than hashing until the set grows.
                let found = if exact.len() <= SCAN_LIMIT {
                    exact.iter().any(|e| e.as_str() == s)
                } else {
                    self.parts
                        .index
                        .contains(exact, s)
                        .unwrap_or_else(|| exact.binary_search_by(|e| e.as_str().cmp(s)).is_ok())
                };
                found || self.wildcard_covers(s, false)
            }
            Some("") => false,
            Some(base) => self.wildcard_covers(base, true),
        }
    }

    /// Whether the set grants every scope of `scopes` (true for none).
    ///
    /// ```
    /// use keyward::{Scope, ScopeSet};
    /// let set: ScopeSet = "read comments".parse()?;
    /// let needed = [Scope::new("read")?, Scope::new("comments")?];
    /// assert!(set.allows_all(&needed));
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn allows_all<'a>(&self, scopes: impl IntoIterator<Item = &'a Scope>) -> bool {
        scopes.into_iter().all(|s| self.allows(s))
    }

    /// Scopes granted by either set (roles combined).
    ///
    /// ```
    /// use keyward::ScopeSet;
    /// let a: ScopeSet = "read tickets:write".parse()?;
    /// let b: ScopeSet = "tickets:*".parse()?;
    /// assert_eq!(a.union(&b).to_string(), "read tickets:*");
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        let exact = self
            .parts
            .exact
            .iter()
            .chain(&other.parts.exact)
            .cloned()
            .collect();
        let wildcards = self
            .parts
            .wildcards
            .iter()
            .chain(&other.parts.wildcards)
            .cloned()
            .collect();
        Self::normalized(exact, wildcards)
    }

    /// Scopes granted by both sets (attenuation, the owner bound). Never wider than either.
    ///
    /// ```
    /// use keyward::ScopeSet;
    /// let set = |s: &str| s.parse::<ScopeSet>();
    /// assert_eq!(set("tickets:*")?.intersection(&set("tickets:write")?), set("tickets:write")?);
    /// assert_eq!(set("*")?.intersection(&set("read a:*")?), set("read a:*")?);
    /// assert_eq!(set("tickets:*")?.intersection(&set("tickets:comments:*")?), set("tickets:comments:*")?);
    /// assert!(set("tickets:*")?.intersection(&set("tickets")?).is_empty());
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        if self.is_all() {
            return other.clone();
        }
        if other.is_all() {
            return self.clone();
        }
        // A scope granted by both is an entry of one set granted by the other: a concrete
        // scope, or the narrower of two wildcards on its path. Concrete scopes are merged
        // in one pass, as both lists are sorted.
        let (a, b) = (&self.parts.exact, &other.parts.exact);
        let mut exact = Vec::with_capacity(a.len().min(b.len()));
        let (mut i, mut j) = (0, 0);
        while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            match x.cmp(y) {
                Ordering::Equal => {
                    exact.push(x.clone());
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    if other.wildcard_covers(x.as_str(), false) {
                        exact.push(x.clone());
                    }
                    i += 1;
                }
                Ordering::Greater => {
                    if self.wildcard_covers(y.as_str(), false) {
                        exact.push(y.clone());
                    }
                    j += 1;
                }
            }
        }
        let rest_a = a.iter().skip(i);
        exact.extend(
            rest_a
                .filter(|x| other.wildcard_covers(x.as_str(), false))
                .cloned(),
        );
        let rest_b = b.iter().skip(j);
        exact.extend(
            rest_b
                .filter(|y| self.wildcard_covers(y.as_str(), false))
                .cloned(),
        );
        let mut wildcards: Vec<Scope> = (self.parts.wildcards.iter())
            .filter(|w| other.allows(w))
            .cloned()
            .collect();
        wildcards.extend(
            (other.parts.wildcards.iter())
                .filter(|w| self.allows(w))
                .cloned(),
        );
        Self::normalized(exact, wildcards)
    }

    /// Whether every scope this set grants is granted by `other`.
    ///
    /// ```
    /// use keyward::ScopeSet;
    /// let set = |s: &str| s.parse::<ScopeSet>();
    /// assert!(set("tickets:write")?.is_subset(&set("tickets:*")?));
    /// assert!(!set("tickets")?.is_subset(&set("tickets:*")?));
    /// assert!(!set("*")?.is_subset(&set("a:*")?));
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        // Each entry must be granted; a wildcard only by a wildcard at or above it.
        self.iter().all(|s| other.allows(s))
    }

    /// Whether the set grants nothing.
    ///
    /// ```
    /// assert!("".parse::<keyward::ScopeSet>()?.is_empty());
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.parts.exact.is_empty() && self.parts.wildcards.is_empty()
    }

    /// Whether the set grants everything (`*`).
    ///
    /// ```
    /// assert!("read *".parse::<keyward::ScopeSet>()?.is_all());
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn is_all(&self) -> bool {
        // `*` has the empty base, which sorts first.
        self.parts
            .wildcards
            .first()
            .is_some_and(|w| base(w).is_empty())
    }

    /// Number of entries in normal form.
    ///
    /// ```
    /// assert_eq!("b a a tickets:* tickets:x".parse::<keyward::ScopeSet>()?.len(), 3);
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.parts.exact.len() + self.parts.wildcards.len()
    }

    /// The entries in normal form: concrete scopes, then wildcards (`*` alone for all).
    ///
    /// ```
    /// let set: keyward::ScopeSet = "tickets:* read".parse()?;
    /// let entries: Vec<&str> = set.iter().map(|s| s.as_str()).collect();
    /// assert_eq!(entries, ["read", "tickets:*"]);
    /// # Ok::<(), keyward::scope::ScopeError>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Scope> + '_ {
        self.parts.exact.iter().chain(&self.parts.wildcards)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = core::iter::Chain<core::slice::Iter<'a, Scope>, core::slice::Iter<'a, Scope>>;
    fn into_iter(self) -> Self::IntoIter {
        self.parts.exact.iter().chain(&self.parts.wildcards)
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = s.split([' ', ',']).filter(|p| !p.is_empty());
        // Count before validating anything, so huge inputs are refused after a short scan.
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
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ScopeSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX_SCOPES} scopes")
            }
            // Stops at the first entry past the limit instead of reading the whole list.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ScopeSet, A::Error> {
                let mut scopes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_SCOPES));
                while let Some(scope) = seq.next_element::<Scope>()? {
                    if scopes.len() == MAX_SCOPES {
                        return Err(serde::de::Error::custom(ScopeError::TooMany));
                    }
                    scopes.push(scope);
                }
                ScopeSet::from_scopes(scopes).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_seq(Visitor)
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

    #[test]
    fn the_hash_index_agrees_with_a_search_at_every_size() {
        for n in 0..=80 {
            let members: Vec<String> = (0..n).map(|i| format!("area{i}:write")).collect();
            let set = ScopeSet::from_scopes(members.iter().map(|m| Scope::new(m).expect("scope")))
                .expect("within limits");
            assert_eq!(
                set.parts.index.positions.is_empty(),
                n <= SCAN_LIMIT,
                "n = {n}"
            );
            for m in &members {
                assert!(set.allows(&Scope::new(m).expect("scope")), "{m} in {n}");
            }
            for i in 0..=n {
                for missing in [format!("area{i}:read"), format!("area{i}"), format!("x{i}")] {
                    assert!(
                        !set.allows(&Scope::new(&missing).expect("scope")),
                        "{missing} in {n}"
                    );
                }
            }
        }
    }

    fn set(s: &str) -> ScopeSet {
        s.parse().expect("valid set")
    }

    fn scope(s: &str) -> Scope {
        s.parse().expect("valid scope")
    }

    #[test]
    fn normalization() {
        assert_eq!(set("b a a").to_string(), "a b");
        assert_eq!(set("b,a, c").to_string(), "a b c");
        assert_eq!(
            set("tickets:write tickets:* tickets:a:*").to_string(),
            "tickets:*"
        );
        assert_eq!(set("read, * tickets:*").to_string(), "*");
        assert_eq!(set("tickets tickets:*").to_string(), "tickets tickets:*");
        // `a-b` sorts between `a` and `a:x`; the wildcard lookup is by ancestor, not order.
        assert_eq!(set("a-b:* a:x a:* a-b:c").to_string(), "a:* a-b:*");
        assert_eq!(set(""), ScopeSet::new());
        assert_eq!(set("x:y:* x:*"), set("x:*"));
    }

    #[test]
    fn allows_rules() {
        let s = set("read a-b:* a:x:*");
        assert!(s.allows(&scope("read")));
        assert!(!s.allows(&scope("read:more")));
        assert!(s.allows(&scope("a-b:c")));
        assert!(!s.allows(&scope("a-b")));
        assert!(!s.allows(&scope("a:c")));
        assert!(s.allows(&scope("a:x:y:z")));
        assert!(s.allows(&scope("a:x:y:*")));
        assert!(s.allows(&scope("a:x:*")));
        assert!(!s.allows(&scope("a:*")));
        assert!(!s.allows(&scope("*")));
        assert!(ScopeSet::all().allows(&scope("*")));
        assert!(!ScopeSet::new().allows(&scope("read")));
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
        assert_eq!(set("a b c").intersection(&set("b c d")), set("b c"));
        assert_eq!(set("a b:*").union(&set("b:c d")), set("a b:* d"));
        assert_eq!(set("a").union(&set("*")), ScopeSet::all());
        assert!(set("tickets:write").is_subset(&set("tickets:*")));
        assert!(!set("tickets").is_subset(&set("tickets:*")));
        assert!(set("a:b:*").is_subset(&set("a:*")));
        assert!(!set("a:*").is_subset(&set("a:b:*")));
        assert!(!set("*").is_subset(&set("a:*")));
        assert!(set("").is_subset(&set("")));
    }

    #[test]
    fn too_many_is_refused_fast() {
        let huge = "a ".repeat(10_000);
        assert_eq!(huge.parse::<ScopeSet>(), Err(ScopeError::TooMany));
        let at_limit = "a ".repeat(MAX_SCOPES);
        assert_eq!(at_limit.parse::<ScopeSet>(), Ok(set("a")));
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
        assert!(serde_json::from_str::<ScopeSet>(r#""read""#).is_err());
        let huge = serde_json::to_string(&vec!["a"; 10_000]).expect("serialize");
        let err = serde_json::from_str::<ScopeSet>(&huge).expect_err("too many");
        assert!(err.to_string().contains("maximum 256"), "{err}");
    }
}
