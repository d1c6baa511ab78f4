//! Resource restrictions: a key limited to some companies, or some projects within them.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest resource path, in characters.
pub const MAX_RESOURCE_LEN: usize = 256;
/// Most segments in a resource path.
pub const MAX_RESOURCE_DEPTH: usize = 8;
/// Most resources in one restriction list.
const MAX_RESOURCES: usize = 256;

/// A resource path: `kind:id` segments joined by `/`, such as `company:42` or
/// `company:42/project:7`. Kinds match `[a-z][a-z0-9_-]*`, ids `[A-Za-z0-9_.-]+`.
///
/// A path contains itself and every path below it, segment by segment: `company:42`
/// contains `company:42/project:7` but not `company:420`.
///
/// ```
/// use keyward::Resource;
/// let company: Resource = "company:42".parse()?;
/// assert!(company.contains(&"company:42/project:7".parse()?));
/// assert!(!company.contains(&"company:420".parse()?));
/// # Ok::<(), keyward::ResourceError>(())
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
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this path or below it, comparing whole segments.
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
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Which resources a key may touch: all of them, or those contained in a list.
///
/// An intersection that leaves no resource allows nothing, never everything. Serde form:
/// `null` for unrestricted, a list of paths otherwise.
///
/// ```
/// use keyward::Restrictions;
/// let key = Restrictions::only(["company:42"])?;
/// assert!(key.allows(&"company:42/project:7".parse()?));
/// assert!(!key.allows(&"company:4".parse()?));
/// let narrower = key.intersection(&Restrictions::only(["company:42/project:7"])?);
/// assert!(!narrower.allows(&"company:42".parse()?));
/// assert!(!key.intersection(&Restrictions::only(["company:9"])?).allows(&"company:9".parse()?));
/// # Ok::<(), keyward::ResourceError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Restrictions(Option<Vec<Resource>>);

impl Restrictions {
    /// No restriction.
    #[must_use]
    pub fn unrestricted() -> Self {
        Self(None)
    }

    /// Limited to the given resources (at least one).
    ///
    /// # Errors
    /// [`ResourceError`] for an invalid path or an empty list.
    pub fn only<I: IntoIterator<Item = S>, S: AsRef<str>>(
        resources: I,
    ) -> Result<Self, ResourceError> {
        let list = resources
            .into_iter()
            .map(|r| Resource::new(r.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(ResourceError::EmptyList);
        }
        if list.len() > MAX_RESOURCES {
            return Err(ResourceError::TooMany);
        }
        Ok(Self::normalized(list))
    }

    fn normalized(mut list: Vec<Resource>) -> Self {
        list.sort();
        list.dedup();
        let mut kept: Vec<Resource> = Vec::with_capacity(list.len());
        for r in list {
            if !kept.iter().any(|k| k.contains(&r)) {
                kept.push(r);
            }
        }
        Self(Some(kept))
    }

    /// Whether there is no restriction.
    #[must_use]
    pub fn is_unrestricted(&self) -> bool {
        self.0.is_none()
    }

    /// The listed resources (`None` when unrestricted; an empty slice allows nothing).
    #[must_use]
    pub fn resources(&self) -> Option<&[Resource]> {
        self.0.as_deref()
    }

    /// Whether a request touching `resource` is allowed.
    #[must_use]
    pub fn allows(&self, resource: &Resource) -> bool {
        match &self.0 {
            None => true,
            Some(list) => list.iter().any(|r| r.contains(resource)),
        }
    }

    /// Resources allowed by both. Never wider than either; may allow nothing.
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        match (&self.0, &other.0) {
            (None, _) => other.clone(),
            (_, None) => self.clone(),
            (Some(a), Some(b)) => {
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
    #[must_use]
    pub fn is_within(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(_)) => a.iter().all(|r| other.allows(r)),
        }
    }

    /// Keeps the items of a listing whose resource is allowed.
    pub fn filter<T, F>(&self, items: impl IntoIterator<Item = T>, resource_of: F) -> Vec<T>
    where
        F: Fn(&T) -> Resource,
    {
        items
            .into_iter()
            .filter(|item| self.allows(&resource_of(item)))
            .collect()
    }
}

impl fmt::Debug for Restrictions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Unrestricted"),
            Some(list) => f.debug_tuple("Only").field(list).finish(),
        }
    }
}

impl Serialize for Restrictions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Restrictions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<Vec<Resource>>::deserialize(deserializer)? {
            None => Ok(Self(None)),
            Some(list) if list.len() > MAX_RESOURCES => {
                Err(serde::de::Error::custom(ResourceError::TooMany))
            }
            // An empty list is kept: it allows nothing, which is the safe reading.
            Some(list) => Ok(Self::normalized(list)),
        }
    }
}
