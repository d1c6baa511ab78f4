//! Types that travel as text: serde writes them with `Display` and reads them back through
//! `FromStr`, so a deserialized value passed the same validation as a parsed one.

use core::fmt;
use core::marker::PhantomData;
use core::str::FromStr;

use serde::{Deserializer, Serializer, de};

/// Serializes `value` as its `Display` text.
pub(crate) fn serialize<S: Serializer, T: fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Deserializes a string and parses it with `T::from_str`; `expecting` names the shape in
/// error messages ("a scope such as \"tickets:write\"").
pub(crate) fn deserialize<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    deserializer.deserialize_str(Parsed(expecting, PhantomData))
}

struct Parsed<T>(&'static str, PhantomData<T>);

impl<T: FromStr> de::Visitor<'_> for Parsed<T>
where
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    // Validates the borrowed or buffered text before anything is copied.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}
