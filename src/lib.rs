#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alphabet;
mod api_key;
mod checksum;
mod format;
mod hash;
mod key_id;
mod parse;
mod prefix;

pub use api_key::{ApiKey, GenerateError};
pub use checksum::{CHECKSUM_LEN, checksum};
pub use format::{FormatError, KeyFormat};
pub use hash::{
    ARGON2_OUTPUT_LEN, ARGON2_SALT_LEN, Argon2Params, Argon2ParamsError, HashAlgorithm,
    HashConfigError, HashError, HashParseError, Hasher, MAX_PEPPER_ID_LEN, MAX_PEPPER_LEN,
    MAX_STORED_HASH_LEN, MIN_PEPPER_LEN, Mismatch, Pepper, PepperError, PepperId, PepperIdError,
    StoredHash,
};
pub use key_id::{KeyId, KeyIdError, MAX_KEY_ID_LEN, MIN_KEY_ID_LEN};
pub use parse::{ParseError, ParsedKey, parse_any};
pub use prefix::{MAX_PREFIX_LEN, Prefix, PrefixError};
