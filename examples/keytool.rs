//! keytool: an operator's tool for keyward keys.
//!
//! ```text
//! keytool generate --prefix P [--count N]   print N new keys, one per line
//! keytool check KEY [--prefix P]            exit 0 and print the key id if KEY is well formed
//! keytool hash [--argon2|--fast] KEY         print KEY's stored-hash string
//! keytool verify KEY HASH                    exit 0 on a match, 1 on a mismatch, 2 on a
//!                                            malformed hash or a missing pepper
//! keytool import --database URL [--catalog F] FILE
//!                                            import keys of another system (JSON lines,
//!                                            `-` for standard input), all or nothing
//! ```
//!
//! `import` opens any store through `AnyStore::open` (build with `--features sqlite` and/or
//! `postgres`; it creates or upgrades the schema) and reads the pepper from
//! `KEYWARD_PEPPER`. Every line is checked first; each refused line is reported on standard
//! error as `line N: reason`, and then nothing is written and the exit status is 1. Lines
//! already imported are skipped and counted, so a rerun succeeds and changes nothing.
//! `--catalog F` names a file of declared scopes, one per line (`#` starts a comment):
//! with it, a line with another scope is refused.
//!
//! The fast hash (the default) reads its pepper from `KEYWARD_PEPPER`, in the text form
//! `[<id>:]<base64>` (`openssl rand -base64 32` makes one), and refuses to run without it.
//! `--argon2` uses Argon2id with OWASP's parameters and needs no pepper. KEY is parsed like
//! `check` without `--prefix`; a malformed KEY exits 1 (it cannot match).
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyward::manager::{ImportError, ImportLine, ImportLineError};
use keyward::store::AnyStore;
use keyward::{
    Hasher, KeyFormat, KeyManager, Pepper, RequestContext, ScopeCatalog, StoredHash,
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
    /// Import keys issued by another system, known by their SHA-256 digest (JSON lines),
    /// all or nothing.
    Import {
        /// The store: `sqlite://keys.db?mode=rwc`, `postgres://…` or `memory:`.
        #[arg(long)]
        database: String,
        /// Declared scopes, one per line: a line with another scope is refused.
        #[arg(long)]
        catalog: Option<std::path::PathBuf>,
        /// The JSON-lines file, `-` for standard input.
        file: String,
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
        Command::Import {
            database,
            catalog,
            file,
        } => import(&database, catalog.as_deref(), &file),
    }
}

/// `keytool import`: checks every line, then imports them all in one write, or nothing.
fn import(database: &str, catalog: Option<&std::path::Path>, file: &str) -> Result<(), Failure> {
    use std::io::Read;

    let pepper = pepper_from_env(None)?;
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text).map(drop))
    };
    read.map_err(|e| Failure::one(format!("cannot read {file}: {e}")))?;
    let catalog = catalog.map(read_catalog).transpose()?;

    let mut lines = Vec::new();
    let mut numbers = Vec::new();
    let mut refused = Vec::new();
    let mut total = 0usize;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        let checked = ImportLine::parse(line);
        match checked {
            Ok(parsed) => {
                lines.push(parsed);
                numbers.push(index + 1);
            }
            Err(e) => refused.push((index + 1, chain(&e))),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::one(format!("cannot start the runtime: {e}")))?;
    let outcome = runtime.block_on(async {
        let store = AnyStore::open(database).await.map_err(|e| chain(&e))?;
        let mut manager = KeyManager::new(
            store,
            KeyFormat::new(["keytool"]).map_err(|e| e.to_string())?,
            Hasher::fast(pepper),
        );
        if let Some(catalog) = catalog {
            manager = manager.with_catalog(catalog);
        }
        // Every line is checked (the catalog, repeated digests) before anything is written.
        let checked = match manager.check_import(&lines) {
            Ok(()) if refused.is_empty() => {
                let ctx = RequestContext::new().actor("keytool import");
                manager.import(&lines, &ctx).await
            }
            Ok(()) => return Ok(None),
            Err(e) => Err(e),
        };
        match checked {
            Ok(summary) => Ok(Some(summary)),
            Err(ImportError::Refused(list)) => {
                // Positions count the parsed lines; the file's line numbers skip blank
                // lines and count the lines refused before this check.
                let line_of = |position: usize| {
                    position
                        .checked_sub(1)
                        .and_then(|i| numbers.get(i).copied())
                        .unwrap_or(position)
                };
                for (position, e) in list {
                    let reason = match e {
                        ImportLineError::Repeated(first) => {
                            chain(&ImportLineError::Repeated(line_of(first)))
                        }
                        other => chain(&other),
                    };
                    refused.push((line_of(position), reason));
                }
                Ok(None)
            }
            Err(e) => Err(chain(&e)),
        }
    });
    match outcome.map_err(Failure::one)? {
        Some(summary) => {
            println!(
                "imported {} keys, skipped {} already imported ({} lines)",
                summary.imported(),
                summary.skipped(),
                lines.len()
            );
            Ok(())
        }
        None => {
            refused.sort_by_key(|(number, _)| *number);
            for (number, reason) in &refused {
                eprintln!("line {number}: {reason}");
            }
            Err(Failure::one(format!(
                "{} of {total} lines refused, nothing written",
                refused.len()
            )))
        }
    }
}

/// A strict catalog of the scopes a file declares, one per line (`#` starts a comment).
fn read_catalog(path: &std::path::Path) -> Result<ScopeCatalog, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::one(format!("cannot read {}: {e}", path.display())))?;
    let scopes = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty());
    ScopeCatalog::builder()
        .scopes(scopes)
        .strict(true)
        .build()
        .map_err(|e| Failure::one(format!("catalog {}: {e}", path.display())))
}

/// An error and its causes, joined by `: `.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
