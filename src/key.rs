//! Keys themselves: their format, generation, parsing, checksum, public id and prefix, and
//! the legacy tokens of other systems ([`LegacyFormats`]).
//!
//! A key reads `{prefix}_{id}{secret}{checksum}`, GitHub's shape: a prefix that says what the
//! key is for (and lets secret scanners find it), a base62 body whose first characters are the
//! public [`KeyId`], and a CRC-32 checksum that rejects a typo before any lookup.
//!
//! ```
//! use keyward::KeyFormat;
//! use keyward::key::ParseError;
//!
//! let format = KeyFormat::new(["tak"])?;
//! let key = format.generate()?; // an `ApiKey`: show it once, store only its hash
//! let parsed = format.parse(key.expose_secret())?;
//! assert_eq!(parsed.key_id(), key.id());
//!
//! // One changed character fails the checksum: no store is asked.
//! let mut typo = key.expose_secret().to_owned();
//! let last = if typo.ends_with('A') { "B" } else { "A" };
//! typo.replace_range(typo.len() - 1.., last);
//! assert!(matches!(format.parse(&typo), Err(ParseError::ChecksumMismatch)));
//! # Ok::<(), keyward::Error>(())
//! ```

pub(crate) mod alphabet;
pub(crate) mod api_key;
pub(crate) mod checksum;
pub(crate) mod format;
pub(crate) mod id;
pub(crate) mod legacy;
pub(crate) mod parse;
pub(crate) mod prefix;

pub use api_key::{ApiKey, GenerateError};
pub use checksum::{CHECKSUM_LEN, checksum};
pub use format::{FormatError, KeyFormat};
pub use id::{KeyId, KeyIdError, MAX_KEY_ID_LEN, MIN_KEY_ID_LEN};
pub use legacy::{LegacyError, LegacyFormats, LegacyParseError, LegacyToken, MAX_LEGACY_TOKEN_LEN};
pub use parse::{ParseError, ParsedKey, parse_any};
pub use prefix::{MAX_PREFIX_LEN, Prefix, PrefixError};
