#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alphabet;
mod api_key;
mod checksum;
mod format;
mod key_id;
mod parse;
mod prefix;

pub use api_key::{ApiKey, GenerateError};
pub use checksum::{CHECKSUM_LEN, checksum};
pub use format::{FormatError, KeyFormat};
pub use key_id::{KeyId, KeyIdError, MAX_KEY_ID_LEN, MIN_KEY_ID_LEN};
pub use parse::{ParseError, ParsedKey, parse_any};
pub use prefix::{MAX_PREFIX_LEN, Prefix, PrefixError};
