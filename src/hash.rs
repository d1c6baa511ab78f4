//! Hashing keys at rest: the stored-hash format, the fast keyed hash, Argon2id, peppers and
//! the Argon2 verification cache.

mod argon2id;
mod cache;
mod compare;
mod hasher;
mod pepper;
mod stored;

pub use argon2id::{Argon2Params, Argon2ParamsError};
pub use hasher::{HashConfigError, HashError, Hasher, Mismatch};
pub use pepper::{
    MAX_PEPPER_ID_LEN, MAX_PEPPER_LEN, MIN_PEPPER_LEN, Pepper, PepperError, PepperId, PepperIdError,
};
pub use stored::{
    ARGON2_OUTPUT_LEN, ARGON2_SALT_LEN, HashAlgorithm, HashParseError, MAX_STORED_HASH_LEN,
    StoredHash,
};
