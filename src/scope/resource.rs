//! Resource restrictions: a key limited to some companies, or some projects within them.

use core::fmt;
use core::str::FromStr;
use std::borrow::Borrow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest resource path, in characters.
pub const MAX_RESOURCE_LEN: usize = 256;
/// Most segments in a resource path.
pub const MAX_RESOURCE_DEPTH: usize = 8;
/// Most resources in a restriction list read from outside ([`Restrictions::only`], serde).
pub const MAX_RESOURCES: usize = 256;

/// A resource path: `kind:id` segments joined by `/`, such as `company:42` or
/// `company:42/project:7`. Kinds match `[a-z][a-z0-9_-]*`, ids `[A-Za-z0-9_.-]+`; at most
/// [`MAX_RESOURCE_DEPTH`] segments and [`MAX_RESOURCE_LEN`] characters. Serde form: the
/// string.
///
/// A path contains itself and every path below it, segment by segment: `company:42`
/// contains `company:42/project:7` but not `company:420`.
///
/// ```
/// use keyward::scope::Resource;
/// let company: Resource = "company:42".parse()?;
/// assert!(company.contains(&"company:42/project:7".parse()?));
/// assert!(!company.contains(&"company:420".parse()?));
/// # Ok::<(), keyward::scope::ResourceError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource(Box<str>);

/// Why a resource path or restriction list is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// Empty, or longer than [`MAX_RESOURCE_LEN`].
    #[error("resource must have 1 to {MAX_RESOURCE_LEN} characters")]
    Length,
    /// More than [`MAX_RESOURCE_DEPTH`] segments.
    #[error("resource too deep (maximum {MAX_RESOURCE_DEPTH} segments)")]
    TooDeep,
    /// A segment is not `kind:id`.
    #[error("resource segment {index} is not kind:id (kind [a-z][a-z0-9_-]*, id [A-Za-z0-9_.-]+)")]
    Segment {
        /// Zero-based segment index.
        index: usize,
    },
    /// A restriction list is empty (use unrestricted, or list at least one resource).
    #[error("a restriction list needs at least one resource")]
    EmptyList,
    /// Too many resources in one list.
    #[error("too many resources (maximum {MAX_RESOURCES})")]
    TooMany,
}

impl Resource {
    /// Validates a resource path.
    ///
    /// ```
    /// use keyward::scope::{Resource, ResourceError};
    /// assert!(Resource::new("company:42/project:7").is_ok());
    /// assert_eq!(Resource::new("company:42/project"), Err(ResourceError::Segment { index: 1 }));
    /// assert_eq!(Resource::new("company:42/"), Err(ResourceError::Segment { index: 1 }));
    /// ```
    ///
    /// # Errors
    /// [`ResourceError`] naming the problem.
    pub fn new(s: &str) -> Result<Self, ResourceError> {
        if s.is_empty() || s.len() > MAX_RESOURCE_LEN {
            return Err(ResourceError::Length);
        }
        if s.split('/').count() > MAX_RESOURCE_DEPTH {
            return Err(ResourceError::TooDeep);
        }
        for (index, segment) in s.split('/').enumerate() {
            let Some((kind, id)) = segment.split_once(':') else {
                return Err(ResourceError::Segment { index });
            };
            let kind_ok = kind.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
                && kind.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            let id_ok = !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !kind_ok || !id_ok {
                return Err(ResourceError::Segment { index });
            }
        }
        Ok(Self(s.into()))
    }

    /// The path as a string slice.
    ///
    /// ```
    /// assert_eq!("company:42".parse::<keyward::scope::Resource>()?.as_str(), "company:42");
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this path or below it, comparing whole segments.
    ///
    /// ```
    /// use keyward::scope::Resource;
    /// let r = |s: &str| s.parse::<Resource>();
    /// assert!(r("company:42")?.contains(&r("company:42")?));
    /// assert!(!r("company:4")?.contains(&r("company:42")?));
    /// assert!(!r("company:42/project:7")?.contains(&r("company:42")?));
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn contains(&self, other: &Resource) -> bool {
        other.0 == self.0
            || (other.0.starts_with(&*self.0)
                && other.0.as_bytes().get(self.0.len()) == Some(&b'/'))
    }
}

impl FromStr for Resource {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resource({})", self.0)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::text::deserialize(
            deserializer,
            "a resource path such as \"company:42/project:7\"",
        )
    }
}

/// Which resources a key may touch: all of them, those contained in a list, or none.
///
/// - [`unrestricted`](Self::unrestricted) (the default) allows every resource.
/// - [`only`](Self::only) allows the listed resources and everything below them; the list
///   is never empty.
/// - Nothing: what an intersection of disjoint lists leaves. It allows no resource, and is
///   never mistaken for unrestricted ([`is_nothing`](Self::is_nothing)).
///
/// Serde form: `null` for unrestricted, a list of paths otherwise (`[]` for nothing).
///
/// ```
/// use keyward::scope::Restrictions;
/// let key = Restrictions::only(["company:42"])?;
/// assert!(key.allows(&"company:42/project:7".parse()?));
/// assert!(!key.allows(&"company:4".parse()?));
/// let narrower = key.intersection(&Restrictions::only(["company:42/project:7"])?);
/// assert!(!narrower.allows(&"company:42".parse()?));
/// let disjoint = key.intersection(&Restrictions::only(["company:9"])?);
/// assert!(disjoint.is_nothing());
/// assert!(!disjoint.allows(&"company:9".parse()?));
/// # Ok::<(), keyward::scope::ResourceError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Restrictions(Inner);

#[derive(Clone, Default, PartialEq, Eq, Hash)]
enum Inner {
    #[default]
    Unrestricted,
    /// Sorted, none containing another; empty means nothing is allowed.
    Only(Vec<Resource>),
}

impl Restrictions {
    /// No restriction.
    ///
    /// ```
    /// let any = keyward::scope::Restrictions::unrestricted();
    /// assert!(any.allows(&"company:1".parse()?));
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn unrestricted() -> Self {
        Self(Inner::Unrestricted)
    }

    /// Allows no resource at all.
    ///
    /// ```
    /// let none = keyward::scope::Restrictions::nothing();
    /// assert!(none.is_nothing() && !none.is_unrestricted());
    /// assert!(!none.allows(&"company:1".parse()?));
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn nothing() -> Self {
        Self(Inner::Only(Vec::new()))
    }

    /// Limited to the given resources (at least one, at most [`MAX_RESOURCES`]).
    ///
    /// ```
    /// use keyward::scope::{ResourceError, Restrictions};
    /// let r = Restrictions::only(["company:42/project:7", "company:42", "company:9"])?;
    /// assert_eq!(r.resources().map(|l| l.len()), Some(2));
    /// assert_eq!(Restrictions::only(Vec::<&str>::new()), Err(ResourceError::EmptyList));
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    ///
    /// # Errors
    /// [`ResourceError`] for an invalid path, an empty list or too many resources.
    pub fn only<I: IntoIterator<Item = S>, S: AsRef<str>>(
        resources: I,
    ) -> Result<Self, ResourceError> {
        let mut list = Vec::new();
        for r in resources {
            if list.len() == MAX_RESOURCES {
                return Err(ResourceError::TooMany);
            }
            list.push(Resource::new(r.as_ref())?);
        }
        if list.is_empty() {
            return Err(ResourceError::EmptyList);
        }
        Ok(Self::normalized(list))
    }

    fn normalized(mut list: Vec<Resource>) -> Self {
        list.sort();
        list.dedup();
        // A path sorts before what it contains, so containers are already kept.
        let mut kept: Vec<Resource> = Vec::with_capacity(list.len());
        for r in list {
            if !kept.iter().any(|k| k.contains(&r)) {
                kept.push(r);
            }
        }
        Self(Inner::Only(kept))
    }

    /// Whether there is no restriction.
    ///
    /// ```
    /// assert!(keyward::scope::Restrictions::default().is_unrestricted());
    /// ```
    #[must_use]
    pub fn is_unrestricted(&self) -> bool {
        matches!(self.0, Inner::Unrestricted)
    }

    /// Whether no resource is allowed.
    ///
    /// ```
    /// assert!(!keyward::scope::Restrictions::default().is_nothing());
    /// ```
    #[must_use]
    pub fn is_nothing(&self) -> bool {
        matches!(&self.0, Inner::Only(list) if list.is_empty())
    }

    /// The listed resources, normalized (`None` when unrestricted; an empty slice allows
    /// nothing).
    ///
    /// ```
    /// let r = keyward::scope::Restrictions::only(["company:42"])?;
    /// assert_eq!(r.resources().map(|l| l[0].as_str()), Some("company:42"));
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn resources(&self) -> Option<&[Resource]> {
        match &self.0 {
            Inner::Unrestricted => None,
            Inner::Only(list) => Some(list),
        }
    }

    /// Whether a request touching `resource` is allowed: some listed resource contains it.
    ///
    /// ```
    /// let r = keyward::scope::Restrictions::only(["company:42/project:7"])?;
    /// assert!(r.allows(&"company:42/project:7/ticket:1".parse()?));
    /// assert!(!r.allows(&"company:42/project:70".parse()?));
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn allows(&self, resource: &Resource) -> bool {
        match &self.0 {
            Inner::Unrestricted => true,
            Inner::Only(list) => list.iter().any(|r| r.contains(resource)),
        }
    }

    /// Resources allowed by both. Never wider than either; may allow nothing.
    ///
    /// ```
    /// use keyward::scope::Restrictions;
    /// let a = Restrictions::only(["company:42", "company:9/project:1"])?;
    /// let b = Restrictions::only(["company:42/project:7", "company:9"])?;
    /// let both = a.intersection(&b);
    /// assert_eq!(both, Restrictions::only(["company:42/project:7", "company:9/project:1"])?);
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        match (&self.0, &other.0) {
            (Inner::Unrestricted, _) => other.clone(),
            (_, Inner::Unrestricted) => self.clone(),
            (Inner::Only(a), Inner::Only(b)) => {
                // A resource allowed by both lies below the deeper of two nested entries.
                let mut out = Vec::new();
                for x in a {
                    for y in b {
                        if x.contains(y) {
                            out.push(y.clone());
                        } else if y.contains(x) {
                            out.push(x.clone());
                        }
                    }
                }
                Self::normalized(out)
            }
        }
    }

    /// Whether everything this allows, `other` allows too.
    ///
    /// ```
    /// use keyward::scope::Restrictions;
    /// let project = Restrictions::only(["company:42/project:7"])?;
    /// let company = Restrictions::only(["company:42"])?;
    /// assert!(project.is_within(&company));
    /// assert!(!company.is_within(&project));
    /// assert!(!Restrictions::unrestricted().is_within(&company));
    /// assert!(Restrictions::nothing().is_within(&project));
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    #[must_use]
    pub fn is_within(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (_, Inner::Unrestricted) => true,
            (Inner::Unrestricted, Inner::Only(_)) => false,
            (Inner::Only(a), Inner::Only(_)) => a.iter().all(|r| other.allows(r)),
        }
    }

    /// Keeps the items of a listing whose resource is allowed, in order. `resource_of` may
    /// return the resource by value or by reference.
    ///
    /// ```
    /// use keyward::scope::{Resource, Restrictions};
    /// struct Ticket { id: u32, project: Resource }
    /// let rows = vec![
    ///     Ticket { id: 1, project: "company:42/project:7".parse()? },
    ///     Ticket { id: 2, project: "company:43/project:1".parse()? },
    /// ];
    /// let token = Restrictions::only(["company:42"])?;
    /// let visible = token.filter(rows, |t| t.project.clone());
    /// assert_eq!(visible.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
    /// # Ok::<(), keyward::scope::ResourceError>(())
    /// ```
    pub fn filter<T, R, F>(&self, items: impl IntoIterator<Item = T>, mut resource_of: F) -> Vec<T>
    where
        F: FnMut(&T) -> R,
        R: Borrow<Resource>,
    {
        items
            .into_iter()
            .filter(|item| self.allows(resource_of(item).borrow()))
            .collect()
    }
}

impl fmt::Debug for Restrictions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Unrestricted => f.write_str("Unrestricted"),
            Inner::Only(list) if list.is_empty() => f.write_str("Nothing"),
            Inner::Only(list) => f.debug_tuple("Only").field(list).finish(),
        }
    }
}

impl Serialize for Restrictions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.resources().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Restrictions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List(Vec<Resource>);
        impl<'de> Deserialize<'de> for List {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_seq(ListVisitor)
            }
        }
        struct ListVisitor;
        impl<'de> serde::de::Visitor<'de> for ListVisitor {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX_RESOURCES} resource paths")
            }
            // Stops at the first entry past the limit.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut list = Vec::new();
                while let Some(r) = seq.next_element::<Resource>()? {
                    if list.len() == MAX_RESOURCES {
                        return Err(serde::de::Error::custom(ResourceError::TooMany));
                    }
                    list.push(r);
                }
                Ok(List(list))
            }
        }
        Ok(match Option::<List>::deserialize(deserializer)? {
            None => Self::unrestricted(),
            // An empty list allows nothing, which is also the safe reading.
            Some(List(list)) => Self::normalized(list),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(list: &[&str]) -> Restrictions {
        Restrictions::only(list).expect("valid")
    }

    #[test]
    fn grammar() {
        for ok in ["company:42", "company:42/project:7", "a:B-1.x_y", "k2_-:0"] {
            assert!(Resource::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(Resource::new(""), Err(ResourceError::Length));
        assert_eq!(Resource::new(&"a:".repeat(200)), Err(ResourceError::Length));
        for (bad, index) in [
            ("company", 0),
            ("company:", 0),
            (":42", 0),
            ("Company:42", 0),
            ("1co:42", 0),
            ("company:4 2", 0),
            ("company:42/", 1),
            ("company:42//project:7", 1),
            ("company:42/project:7:8", 1),
            ("company:42/project:é", 1),
        ] {
            assert_eq!(
                Resource::new(bad),
                Err(ResourceError::Segment { index }),
                "{bad}"
            );
        }
        assert_eq!(
            Resource::new(&["a:1"; 9].join("/")),
            Err(ResourceError::TooDeep)
        );
        assert!(Resource::new(&["a:1"; 8].join("/")).is_ok());
    }

    #[test]
    fn containment_is_by_whole_segments() {
        let r = |s: &str| Resource::new(s).expect("valid");
        assert!(r("company:42").contains(&r("company:42/project:7")));
        assert!(!r("company:4").contains(&r("company:42")));
        assert!(!r("company:4").contains(&r("company:42/project:7")));
        assert!(!r("company:42/project:7").contains(&r("company:42")));
        assert!(!r("company:42/project:7").contains(&r("company:42/project:70")));
        assert!(!r("company:42").contains(&r("company:42-x")));
    }

    #[test]
    fn intersections_never_widen() {
        let a = only(&["company:42"]);
        assert_eq!(
            a.intersection(&only(&["company:4"])),
            Restrictions::nothing()
        );
        assert!(
            !a.intersection(&only(&["company:4"]))
                .allows(&"company:4".parse().expect("valid"))
        );
        assert_eq!(a.intersection(&Restrictions::unrestricted()), a);
        assert_eq!(
            Restrictions::nothing().intersection(&Restrictions::unrestricted()),
            Restrictions::nothing()
        );
        assert_eq!(
            only(&["company:42", "company:42-x", "company:42/project:7"]),
            only(&["company:42", "company:42-x"])
        );
    }

    #[test]
    fn serde_forms() {
        let r = only(&["company:42/project:7"]);
        let json = serde_json::to_string(&r).expect("serialize");
        assert_eq!(json, r#"["company:42/project:7"]"#);
        assert_eq!(serde_json::from_str::<Restrictions>(&json).expect("de"), r);
        assert_eq!(
            serde_json::to_string(&Restrictions::unrestricted()).expect("ser"),
            "null"
        );
        assert_eq!(
            serde_json::from_str::<Restrictions>("null").expect("de"),
            Restrictions::unrestricted()
        );
        assert_eq!(
            serde_json::to_string(&Restrictions::nothing()).expect("ser"),
            "[]"
        );
        assert!(
            serde_json::from_str::<Restrictions>("[]")
                .expect("de")
                .is_nothing()
        );
        assert!(serde_json::from_str::<Restrictions>(r#"["company:"]"#).is_err());
        let huge = serde_json::to_string(&vec!["company:1"; 10_000]).expect("ser");
        let err = serde_json::from_str::<Restrictions>(&huge).expect_err("too many");
        assert!(err.to_string().contains("maximum 256"), "{err}");
    }
}
