//! How scopes combine: scopes, scope sets, the catalog of implications and roles, resource
//! restrictions and the authorization check.
//!
//! # The rules
//! - A scope is segments joined by `:` (`read`, `tickets:write`, `billing:invoices:read`);
//!   each segment matches `[a-z0-9][a-z0-9_.-]*`.
//! - `*` may only be a whole last segment. `tickets:*` grants every scope strictly below
//!   `tickets` (`tickets:write`, `tickets:comments:read`) but **not** `tickets` itself;
//!   `*` alone grants every scope. Nothing else is a pattern: `tickets*` or `*:read` are
//!   invalid, and no other character is special.
//! - A [`ScopeSet`] means the set of concrete scopes it grants, so
//!   `a.intersection(&b).allows(s) == a.allows(s) && b.allows(s)` and
//!   `a.union(&b).allows(s) == a.allows(s) || b.allows(s)` for every scope `s`.
//! - Implications come from the [`ScopeCatalog`]: [`ScopeCatalog::expand`] closes a set
//!   under them once, after which `allows` needs no catalog. A set grants a declared scope
//!   when it holds it or a wildcard above it, and a granted declared scope adds everything
//!   it implies: with `tickets:write` implying `read`, `{tickets:*}` expands to
//!   `{read, tickets:*}`. Implications only ever add scopes; a wildcard does not grant the
//!   scope at its own base (`tickets:*` does not grant `tickets`, nor what `tickets`
//!   implies). Union and intersection of expanded sets are expanded, so both laws above
//!   also hold with implications, as long as both sides were expanded by the same catalog.
//! - [`Restrictions`] limit the resources a key touches; they never widen under
//!   intersection, and an empty intersection allows nothing.
//! - [`authorize`] combines both checks and names what is missing in its [`Denied`].
//!
//! ```
//! use keyward::{ScopeCatalog, ScopeSet};
//!
//! let catalog = ScopeCatalog::builder()
//!     .scopes(["read", "tickets:write"])
//!     .implies("tickets:write", "read")
//!     .build()?;
//! let granted: ScopeSet = catalog.expand(&"tickets:write".parse()?);
//! assert!(granted.allows(&"read".parse()?));
//! assert!(!granted.allows(&"tickets:delete".parse()?));
//! # Ok::<(), keyward::Error>(())
//! ```

use core::fmt;
use core::str::FromStr;
use std::borrow::Borrow;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod authorize;
mod catalog;
mod resource;
mod set;

pub use authorize::{Denied, authorize};
pub use catalog::{
    CatalogError, CatalogListing, MAX_DESCRIPTION_LEN, RoleEntry, ScopeCatalog,
    ScopeCatalogBuilder, ScopeEntry, UnknownScopes,
};
pub use resource::{
    MAX_RESOURCE_DEPTH, MAX_RESOURCE_LEN, MAX_RESOURCES, Resource, ResourceError, Restrictions,
};
pub use set::{MAX_SCOPES, ScopeSet};

/// Longest scope, in characters (bytes: scopes are ASCII).
pub const MAX_SCOPE_LEN: usize = 128;
/// Most segments in a scope, a trailing `*` included.
pub const MAX_SCOPE_DEPTH: usize = 8;

/// One scope, such as `tickets:write`, or a wildcard such as `tickets:*` or `*`.
///
/// Grammar: one to [`MAX_SCOPE_DEPTH`] segments joined by `:`, at most [`MAX_SCOPE_LEN`]
/// characters in all; each segment matches `[a-z0-9][a-z0-9_.-]*`, except that the last
/// may be `*`. `tickets:*` grants every scope strictly below `tickets`, but not `tickets`
/// itself; `*` grants every scope. Serde form: the string.
///
/// ```
/// use keyward::Scope;
/// let wildcard: Scope = "tickets:*".parse()?;
/// assert!(wildcard.grants(&"tickets:write".parse()?));
/// assert!(!wildcard.grants(&"tickets".parse()?));
/// assert!("Tickets".parse::<Scope>().is_err());
/// # Ok::<(), keyward::scope::ScopeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(Arc<str>);

/// Why a string is not a valid [`Scope`] or [`ScopeSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope is empty.
    #[error("scope is empty")]
    Empty,
    /// Longer than [`MAX_SCOPE_LEN`].
    #[error("scope too long (maximum {MAX_SCOPE_LEN} characters)")]
    TooLong,
    /// More than [`MAX_SCOPE_DEPTH`] segments.
    #[error("scope too deep (maximum {MAX_SCOPE_DEPTH} segments)")]
    TooDeep,
    /// An empty segment (`a::b`, a leading or trailing `:`).
    #[error("scope has an empty segment at position {position}")]
    EmptySegment {
        /// Zero-based character position.
        position: usize,
    },
    /// A character outside the grammar.
    #[error(
        "scope has an invalid character at position {position} (segments match [a-z0-9][a-z0-9_.-]*)"
    )]
    InvalidCharacter {
        /// Zero-based character position.
        position: usize,
    },
    /// `*` somewhere other than as the whole last segment.
    #[error("'*' is allowed only as the whole last segment (as in tickets:* or *)")]
    MisplacedWildcard,
    /// A set with more than [`MAX_SCOPES`] scopes.
    #[error("too many scopes (maximum {MAX_SCOPES})")]
    TooMany,
}

impl Scope {
    /// Validates a scope.
    ///
    /// # Errors
    /// [`ScopeError`] naming the first rule broken.
    pub fn new(s: &str) -> Result<Self, ScopeError> {
        validate(s)?;
        Ok(Self(s.into()))
    }

    /// The scope as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a wildcard (`*` or ending in `:*`).
    #[must_use]
    pub fn is_wildcard(&self) -> bool {
        self.0.ends_with('*')
    }

    /// For a wildcard, the part before `:*` (`""` for `*` alone).
    pub(crate) fn wildcard_base(&self) -> Option<&str> {
        if &*self.0 == "*" {
            Some("")
        } else {
            self.0.strip_suffix(":*")
        }
    }

    /// The `*` wildcard.
    pub(crate) fn all() -> Self {
        Self("*".into())
    }

    /// Whether this scope (possibly a wildcard) grants the concrete or wildcard scope `other`.
    #[must_use]
    pub fn grants(&self, other: &Scope) -> bool {
        match self.wildcard_base() {
            None => self == other,
            Some("") => true,
            Some(base) => match other.wildcard_base() {
                // A wildcard grants a narrower or equal wildcard.
                Some(other_base) => other_base == base || is_below(other_base, base),
                None => is_below(other.as_str(), base),
            },
        }
    }
}

/// Whether `scope` is strictly below `base` (`tickets:write` is below `tickets`, and every
/// scope is below `""`, the base of `*`).
pub(crate) fn is_below(scope: &str, base: &str) -> bool {
    if base.is_empty() {
        return !scope.is_empty();
    }
    scope.len() > base.len() + 1
        && scope.starts_with(base)
        && scope.as_bytes().get(base.len()) == Some(&b':')
}

/// Compares as strings, except that `:` sorts before every other character. In this order
/// the scopes below `a` come right after `a` (before `a-b`), so among wildcards none of
/// which is below another, the one covering a scope, if any, is the greatest at or before
/// it.
pub(crate) fn segment_order(a: &str, b: &str) -> core::cmp::Ordering {
    let key = |c: u8| if c == b':' { 0 } else { c };
    match a.bytes().zip(b.bytes()).find(|(x, y)| x != y) {
        Some((x, y)) => key(x).cmp(&key(y)),
        None => a.len().cmp(&b.len()),
    }
}

fn validate(s: &str) -> Result<(), ScopeError> {
    if s.is_empty() {
        return Err(ScopeError::Empty);
    }
    if s.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong);
    }
    let segments = s.split(':').count();
    if segments > MAX_SCOPE_DEPTH {
        return Err(ScopeError::TooDeep);
    }
    let mut position = 0;
    for (i, segment) in s.split(':').enumerate() {
        if segment.is_empty() {
            return Err(ScopeError::EmptySegment { position });
        }
        if segment.contains('*') {
            if segment != "*" || i + 1 != segments {
                return Err(ScopeError::MisplacedWildcard);
            }
        } else {
            for (j, b) in segment.bytes().enumerate() {
                let ok = b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || (j > 0 && matches!(b, b'_' | b'.' | b'-'));
                if !ok {
                    // Earlier bytes were ASCII, so this byte offset is a character position.
                    return Err(ScopeError::InvalidCharacter {
                        position: position + j,
                    });
                }
            }
        }
        position += segment.len() + 1;
    }
    Ok(())
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.0)
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// `Eq`, `Ord` and `Hash` of a scope are those of its string, so borrowing as `str` is sound
// for maps and sets.
impl Borrow<str> for Scope {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scope;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scope such as \"tickets:write\"")
            }
            // Validates the borrowed or buffered text before copying it.
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scope, E> {
                Scope::new(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in [
            "read",
            "tickets:write",
            "billing:invoices:read",
            "a1.b-c_d",
            "*",
            "tickets:*",
            "0",
        ] {
            assert!(Scope::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(Scope::new(""), Err(ScopeError::Empty));
        assert_eq!(
            Scope::new("a::b"),
            Err(ScopeError::EmptySegment { position: 2 })
        );
        assert_eq!(
            Scope::new(":a"),
            Err(ScopeError::EmptySegment { position: 0 })
        );
        assert_eq!(
            Scope::new("a:"),
            Err(ScopeError::EmptySegment { position: 2 })
        );
        assert_eq!(
            Scope::new("Read"),
            Err(ScopeError::InvalidCharacter { position: 0 })
        );
        assert_eq!(
            Scope::new("a:_b"),
            Err(ScopeError::InvalidCharacter { position: 2 })
        );
        assert_eq!(
            Scope::new("a:bé"),
            Err(ScopeError::InvalidCharacter { position: 3 })
        );
        assert_eq!(Scope::new("tickets*"), Err(ScopeError::MisplacedWildcard));
        assert_eq!(Scope::new("*:read"), Err(ScopeError::MisplacedWildcard));
        assert_eq!(Scope::new("a:**"), Err(ScopeError::MisplacedWildcard));
        assert_eq!(
            Scope::new("a:".repeat(8).trim_end_matches(':')),
            Ok(Scope("a:a:a:a:a:a:a:a".into()))
        );
        assert_eq!(Scope::new("a:a:a:a:a:a:a:a:a"), Err(ScopeError::TooDeep));
        assert_eq!(Scope::new(&"a".repeat(129)), Err(ScopeError::TooLong));
    }

    #[test]
    fn wildcard_rules() {
        let s = |x: &str| Scope::new(x).expect("valid");
        assert!(s("tickets:*").grants(&s("tickets:write")));
        assert!(s("tickets:*").grants(&s("tickets:comments:read")));
        assert!(!s("tickets:*").grants(&s("tickets")));
        assert!(!s("tickets:*").grants(&s("ticketsx:write")));
        assert!(s("tickets:*").grants(&s("tickets:comments:*")));
        assert!(!s("tickets:comments:*").grants(&s("tickets:*")));
        assert!(s("*").grants(&s("anything:at:all")));
        assert!(!s("read").grants(&s("read:more")));
    }
}
