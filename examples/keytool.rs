//! keytool: an operator's tool for keyward keys.
//!
//! ```text
//! keytool generate --prefix P [--count N]   print N new keys, one per line
//! keytool check KEY [--prefix P]            exit 0 and print the key id if KEY is well formed
//! ```
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyward::KeyFormat;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keytool: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<(), String> {
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
                None => keyward::parse_any(&key)
                    .map_err(|e| e.to_string())?
                    .key_id(),
            };
            println!("{parsed}");
            Ok(())
        }
    }
}
