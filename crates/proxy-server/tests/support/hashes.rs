//! Password hashes made by third-party tools, never by Nephele's own code:
//! `htpasswd` (apache2-utils), `mkpasswd` (whois), and Python's
//! `argon2-cffi` and `bcrypt` (Debian's python3-argon2, python3-bcrypt) run
//! by `/usr/bin/python3`. Passwords go through stdin, never argv. Used by
//! the password tests of proxy-server and (through `#[path]`) nephele.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

const HINT: &str =
    "run scripts/test, which installs apache2-utils, whois, python3-argon2 and python3-bcrypt";

/// Run `command` with `input` on stdin; its trimmed stdout. Fails the test
/// (with the install hint) if the tool is missing or fails.
fn run(command: &mut Command, input: &str) -> String {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{description}: {err}: {HINT}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "{description} failed: {}: {HINT}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn python(script: &str, input: &str) -> String {
    run(Command::new("/usr/bin/python3").args(["-c", script]), input)
}

/// `htpasswd -niB USER` (bcrypt, htpasswd's default cost 5): the hash part.
pub fn htpasswd_bcrypt(user: &str, password: &str) -> String {
    let line = run(Command::new("htpasswd").args(["-niB", user]), password);
    let (_, hash) = line.split_once(':').expect("user:hash");
    assert!(hash.starts_with("$2y$"), "{hash}");
    hash.to_owned()
}

/// `htpasswd -nis USER` (`{SHA}`, unsalted SHA-1): the hash part.
pub fn htpasswd_sha(user: &str, password: &str) -> String {
    let line = run(Command::new("htpasswd").args(["-nis", user]), password);
    let (_, hash) = line.split_once(':').expect("user:hash");
    assert!(hash.starts_with("{SHA}"), "{hash}");
    hash.to_owned()
}

/// `mkpasswd -m sha-512 --stdin`.
pub fn mkpasswd_sha512(password: &str) -> String {
    let hash = run(
        Command::new("mkpasswd").args(["-m", "sha-512", "--stdin"]),
        password,
    );
    assert!(hash.starts_with("$6$"), "{hash}");
    hash
}

/// argon2-cffi with Nephele's documented defaults (m=19456, t=2, p=1).
pub fn python_argon2id(password: &str) -> String {
    python(
        "import sys, argon2\n\
         h = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)\n\
         print(h.hash(sys.stdin.read()))",
        password,
    )
}

/// Python `bcrypt` at cost 10 (`$2b$`).
pub fn python_bcrypt(password: &str) -> String {
    python(
        "import sys, bcrypt\n\
         print(bcrypt.hashpw(sys.stdin.read().encode(), bcrypt.gensalt(10)).decode())",
        password,
    )
}

/// Whether argon2-cffi accepts `password` for `hash`.
pub fn python_verifies_argon2(hash: &str, password: &str) -> bool {
    let script = format!(
        "import sys, argon2\n\
         try:\n    print(argon2.PasswordHasher().verify({hash:?}, sys.stdin.read()))\n\
         except argon2.exceptions.VerifyMismatchError:\n    print(False)"
    );
    python(&script, password) == "True"
}

/// Whether Python's bcrypt accepts `password` for `hash`.
pub fn python_verifies_bcrypt(hash: &str, password: &str) -> bool {
    let script = format!(
        "import sys, bcrypt\nprint(bcrypt.checkpw(sys.stdin.read().encode(), {hash:?}.encode()))"
    );
    python(&script, password) == "True"
}

/// Write `text` to `path` through a rename, as editors and deploy tools
/// do, so a reader never sees half a file.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let temporary = path.with_extension("tmp-new");
    std::fs::write(&temporary, text).expect("write credential file");
    std::fs::rename(&temporary, path).expect("rename credential file");
}
