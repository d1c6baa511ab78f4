//! Hashing keys at rest: the stored-hash format, the fast keyed hash, Argon2id, peppers,
//! the Argon2 verification cache, and the digests of keys imported from other systems.
//!
//! ```
//! use keyward::{Hasher, KeyFormat, Pepper, StoredHash};
//!
//! let hasher = Hasher::fast(Pepper::from_text("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?);
//! let format = KeyFormat::new(["tak"])?;
//! let key = format.generate()?;
//! let parsed = format.parse(key.expose_secret())?;
//! let stored: StoredHash = hasher.hash(&parsed)?; // `$hmac-sha256$pid=k1$…`: store this
//! assert!(hasher.verify(&parsed, &stored).is_ok());
//! assert_eq!(stored.to_string().parse::<StoredHash>()?, stored);
//! # Ok::<(), keyward::Error>(())
//! ```

mod argon2id;
mod cache;
mod compare;
mod foreign;
mod hasher;
mod pepper;
mod stored;

pub use argon2id::{Argon2Params, Argon2ParamsError};
pub use foreign::FOREIGN_DIGEST_LEN;
pub(crate) use foreign::ForeignKey;
pub use hasher::{HashConfigError, HashError, Hasher, Mismatch};
pub use pepper::{
    MAX_PEPPER_ID_LEN, MAX_PEPPER_LEN, MIN_PEPPER_LEN, Pepper, PepperError, PepperId, PepperIdError,
};
pub use stored::{
    ARGON2_OUTPUT_LEN, ARGON2_SALT_LEN, ForeignScheme, HashAlgorithm, HashParseError,
    MAX_STORED_HASH_LEN, StoredHash,
};
