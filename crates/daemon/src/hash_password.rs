//! `hash-password`, a subcommand both binaries offer: read a password from
//! standard input (from the terminal without echo, asked twice) and print
//! its hash for a credential file, e.g.
//! `echo "alice:$(proxy-server hash-password):ops" >> users.htpasswd`.

use aaa::{HashAlgorithm, HashParams};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// The subcommands both binaries share.
#[derive(Debug, Subcommand)]
pub enum Tool {
    /// Read a password from standard input (no echo on a terminal) and print
    /// its hash (argon2id with m=19456,t=2,p=1 by default) for a credential
    /// file.
    HashPassword(HashPasswordArgs),
}

/// `hash-password [--algorithm A] [cost options]`.
#[derive(Debug, Args)]
pub struct HashPasswordArgs {
    /// argon2id, argon2i, argon2d, bcrypt, scrypt, sha256-crypt or sha512-crypt.
    #[arg(long, default_value = "argon2id")]
    pub algorithm: HashAlgorithm,
    /// argon2 memory in KiB (default 19456).
    #[arg(long)]
    pub m_cost: Option<u32>,
    /// argon2 passes (default 2).
    #[arg(long)]
    pub t_cost: Option<u32>,
    /// argon2 lanes (default 1).
    #[arg(long)]
    pub p_cost: Option<u32>,
    /// bcrypt cost (default 12).
    #[arg(long)]
    pub cost: Option<u32>,
    /// SHA-crypt rounds (default 5000).
    #[arg(long)]
    pub rounds: Option<u32>,
}

/// Run `tool`; errors go to stderr with a non-zero status.
pub fn run_tool(tool: Tool) -> ExitCode {
    match tool {
        Tool::HashPassword(args) => match hash_password(&args) {
            Ok(hash) => {
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{hash}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("hash-password: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn hash_password(args: &HashPasswordArgs) -> anyhow::Result<String> {
    let params = HashParams {
        algorithm: args.algorithm,
        m_cost: args.m_cost,
        t_cost: args.t_cost,
        p_cost: args.p_cost,
        cost: args.cost,
        rounds: args.rounds,
        ..HashParams::default()
    };
    let password = read_password()?;
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    Ok(aaa::hash_password(&password, &params)?)
}

/// From the terminal: asked twice without echo. Otherwise the first line
/// of standard input, without its line ending.
fn read_password() -> anyhow::Result<Vec<u8>> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ");
        }
        return Ok(first.into_bytes());
    }
    let mut line = Vec::new();
    if std::io::stdin().lock().read_until(b'\n', &mut line)? == 0 {
        anyhow::bail!("no password on standard input");
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}
