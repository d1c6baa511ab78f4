//! keytool: an operator's tool for keyward keys.
//!
//! ```text
//! keytool generate --prefix P [--count N]   print N new keys, one per line
//! keytool check KEY [--prefix P]            exit 0 and print the key id if KEY is well formed
//! keytool hash [--argon2|--fast] KEY         print KEY's stored-hash string
//! keytool verify KEY HASH                    exit 0 on a match, 1 on a mismatch, 2 on a
//!                                            malformed hash or a missing pepper
//! ```
//!
//! The fast hash (the default) reads its pepper from `KEYWARD_PEPPER`, in the text form
//! `[<id>:]<base64>` (`openssl rand -base64 32` makes one), and refuses to run without it.
//! `--argon2` uses Argon2id with OWASP's parameters and needs no pepper. KEY is parsed like
//! `check` without `--prefix`; a malformed KEY exits 1 (it cannot match).
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyward::{
    Hasher, KeyFormat, Pepper, StoredHash,
    hash::{Argon2Params, PepperError},
};

/// The environment variable holding the fast hash's pepper.
const PEPPER_VAR: &str = "KEYWARD_PEPPER";

#[derive(Parser)]
#[command(name = "keytool", about = "Generate and check keyward API keys")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print new keys, one per line.
    Generate {
        /// Key prefix, such as `tak` or `sk_live`.
        #[arg(long)]
        prefix: String,
        /// How many keys to print.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Check that a key is well formed and print its key id.
    Check {
        /// The key to check.
        key: String,
        /// Require this prefix (and keyward's default lengths); without it any valid prefix
        /// and any body of 16 to 128 characters is accepted, so GitHub tokens check too.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Hash a key for storage and print the stored-hash string.
    Hash {
        /// Argon2id with OWASP's parameters (m=19456, t=2, p=1).
        #[arg(long, conflicts_with = "fast")]
        argon2: bool,
        /// HMAC-SHA256 under the pepper in KEYWARD_PEPPER (the default).
        #[arg(long)]
        fast: bool,
        /// The key to hash.
        key: String,
    },
    /// Verify a key against a stored hash: exit 0 on a match, 1 on a mismatch, 2 on a
    /// malformed hash or a missing pepper.
    Verify {
        /// The presented key.
        key: String,
        /// The stored-hash string, such as `$hmac-sha256$pid=k1$...`.
        hash: String,
    },
}

/// Why keytool stops: a message for stderr and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Exit 1: a malformed key, a mismatch, or a generate/check error.
    fn one(message: impl ToString) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }

    /// Exit 2: a malformed hash or a missing or unusable pepper.
    fn two(message: impl ToString) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::one(message)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, message }) => {
            eprintln!("keytool: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Generate { prefix, count } => {
            let format = KeyFormat::new([prefix.as_str()]).map_err(|e| e.to_string())?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for _ in 0..count {
                let key = format.generate().map_err(|e| e.to_string())?;
                use std::io::Write;
                writeln!(out, "{}", key.expose_secret()).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Command::Check { key, prefix } => {
            let parsed = match prefix {
                Some(prefix) => {
                    let format = KeyFormat::new([prefix.as_str()]).map_err(|e| e.to_string())?;
                    format.parse(&key).map_err(|e| e.to_string())?.key_id()
                }
                None => keyward::key::parse_any(&key)
                    .map_err(|e| e.to_string())?
                    .key_id(),
            };
            println!("{parsed}");
            Ok(())
        }
        Command::Hash {
            argon2,
            fast: _,
            key,
        } => {
            let parsed = keyward::key::parse_any(&key).map_err(Failure::one)?;
            let hasher = if argon2 {
                Hasher::argon2(Argon2Params::DEFAULT)
            } else {
                Hasher::fast(pepper_from_env(None)?)
            };
            let stored = hasher.hash(&parsed).map_err(Failure::two)?;
            println!("{stored}");
            Ok(())
        }
        Command::Verify { key, hash } => {
            let stored: StoredHash = hash
                .parse()
                .map_err(|e| Failure::two(format!("malformed hash: {e}")))?;
            let parsed = keyward::key::parse_any(&key).map_err(Failure::one)?;
            let hasher = match stored.pepper_id() {
                Some(id) => Hasher::fast(pepper_from_env(Some(id.as_str()))?),
                None => Hasher::argon2(Argon2Params::DEFAULT),
            };
            hasher.verify(&parsed, &stored).map_err(Failure::one)?;
            println!("match");
            Ok(())
        }
    }
}

/// Reads the pepper from `KEYWARD_PEPPER`; with `needed`, it must have that id.
fn pepper_from_env(needed: Option<&str>) -> Result<Pepper, Failure> {
    let text = std::env::var(PEPPER_VAR).unwrap_or_default();
    if text.is_empty() {
        return Err(Failure::two(format!(
            "{PEPPER_VAR} is not set, and {}; generate one with `openssl rand -base64 32` \
             and set {PEPPER_VAR}=[<id>:]<base64>",
            PepperError::Missing
        )));
    }
    let pepper =
        Pepper::from_text(&text).map_err(|e| Failure::two(format!("{PEPPER_VAR}: {e}")))?;
    match needed {
        Some(id) if pepper.id().as_str() != id => Err(Failure::two(format!(
            "the hash needs pepper {id:?} but {PEPPER_VAR} holds pepper {:?}",
            pepper.id().as_str()
        ))),
        _ => Ok(pepper),
    }
}
