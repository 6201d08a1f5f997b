//! Passwords in production, end to end: credential files whose hashes were
//! made by third-party tools (htpasswd, mkpasswd, Python argon2/bcrypt),
//! logins by curl `--socks5`, weak hashes, edits while running, the verdict
//! cache, the `hash-password` subcommand and the shipped example policy.

#[path = "support/hashes.rs"]
mod hashes;
mod support;

use hashes::*;
use std::process::Command;
use support::*;

/// A policy whose logins are `USERS:check(...)` against `@DIR@/users`,
/// checked for changes on every login (`check_interval = '0s'`).
fn credentials_policy(listener_keys: &str, load_options: &str) -> String {
    format!(
        "{}\nUSERS = kumo.aaa.load_credentials('@DIR@/users', {{ check_interval = '0s', {load_options} }})\n",
        policy(
            &format!("require_auth = true, {listener_keys}"),
            Some("return USERS:check(username, password, 'ProxyAuthRfc1929')"),
        )
    )
}

/// Start the proxy with `policy` and the credential file `users`.
fn start(policy: &str, users: &str) -> RunningProxy {
    let command = ProxyCommand::with_policy(policy);
    replace_file(&command.dir().join("users"), users);
    command.start()
}

/// `curl --socks5 user:password@proxy URL`: whether the page came back.
fn curl_login(proxy: &RunningProxy, http: &HttpServer, user: &str, password: &str) -> bool {
    let spec = format!("{user}:{password}@{}", proxy.addr);
    let out = run_tool(
        Command::new(require_tool("curl")).args([
            "--silent",
            "--show-error",
            "--max-time",
            "30",
            "--socks5",
            &spec,
            &http.url("/"),
        ]),
        None,
    );
    let ok = out.status.success() && out.stdout_text() == HELLO_BODY;
    assert!(
        ok || !out.status.success(),
        "unexpected body: {}",
        out.stdout_text()
    );
    ok
}

#[test]
fn hashes_from_third_party_tools_log_in_and_wrong_passwords_do_not() {
    let users = format!(
        "# made by four tools\n\
         htb:{}:proxy-users\n\
         mks:{}\n\
         pya:{}:proxy-users,premium-tier\n\
         pyb:{}\n",
        htpasswd_bcrypt("htb", "htpasswd-pw"),
        mkpasswd_sha512("mkpasswd-pw"),
        python_argon2id("argon2-pw"),
        python_bcrypt("bcrypt-pw"),
    );
    let proxy = start(&credentials_policy("", ""), &users);
    let http = HttpServer::start();
    for (user, password) in [
        ("htb", "htpasswd-pw"),
        ("mks", "mkpasswd-pw"),
        ("pya", "argon2-pw"),
        ("pyb", "bcrypt-pw"),
    ] {
        assert!(
            curl_login(&proxy, &http, user, password),
            "{user}\n{}",
            proxy.output_dump()
        );
        assert!(
            !curl_login(&proxy, &http, user, &format!("{password}x")),
            "{user}: wrong password"
        );
    }
    assert!(
        !curl_login(&proxy, &http, "nobody", "argon2-pw"),
        "unknown user"
    );
    // Another user's password does not open an account.
    assert!(!curl_login(&proxy, &http, "htb", "argon2-pw"));
    for password in ["htpasswd-pw", "mkpasswd-pw", "argon2-pw", "bcrypt-pw"] {
        assert!(!proxy.stderr().contains(password), "a password was logged");
    }
}

#[test]
fn a_weak_hash_is_refused_unless_allowed() {
    let sha = htpasswd_sha("old", "legacy-pw");
    let users = format!("# migrated\nold:{sha}\n");
    let command = ProxyCommand::with_policy(&credentials_policy("", ""));
    replace_file(&command.dir().join("users"), &users);
    let finished = command.run_to_exit();
    assert!(!finished.status.success());
    for expected in ["kumo.aaa.load_credentials", "line 2", "{SHA}", "weak"] {
        assert!(
            finished.stderr.contains(expected),
            "{expected}: {}",
            finished.stderr
        );
    }
    assert!(!finished.stderr.contains(&sha[5..]), "the hash was logged");

    let proxy = start(&credentials_policy("", "allow_weak = true"), &users);
    let http = HttpServer::start();
    assert!(curl_login(&proxy, &http, "old", "legacy-pw"));
    assert!(!curl_login(&proxy, &http, "old", "legacy-px"));
}

#[test]
fn edits_apply_while_running_broken_edits_keep_the_old_users_and_removal_beats_the_cache() {
    let (alice, bob, dave) = (
        python_argon2id("alice-pw"),
        htpasswd_bcrypt("bob", "bob-pw"),
        mkpasswd_sha512("dave-pw"),
    );
    let proxy = start(
        &credentials_policy("auth_cache_ttl = '10 minutes'", ""),
        &format!("alice:{alice}\n"),
    );
    let http = HttpServer::start();
    let path = proxy.dir().join("users");
    assert!(curl_login(&proxy, &http, "alice", "alice-pw"));
    assert!(!curl_login(&proxy, &http, "bob", "bob-pw"));

    // Added while running: no restart, no epoch bump.
    replace_file(&path, &format!("alice:{alice}\nbob:{bob}\ndave:{dave}\n"));
    assert!(
        curl_login(&proxy, &http, "bob", "bob-pw"),
        "{}",
        proxy.output_dump()
    );
    assert!(proxy.stderr().contains("credential file reloaded"));

    // A broken edit: carol's line is cut short. The previous users stay
    // (dave never logged in, so no cached verdict answers for him).
    let broken = format!("alice:{alice}\ncarol:{}\n", &bob[..20]);
    replace_file(&path, &broken);
    assert!(
        curl_login(&proxy, &http, "dave", "dave-pw"),
        "{}",
        proxy.output_dump()
    );
    assert!(!curl_login(&proxy, &http, "carol", "bob-pw"));
    let log = proxy.stderr();
    assert!(
        log.contains("credential file not reloaded") && log.contains("line 2"),
        "{log}"
    );
    for hash in [&alice, &bob, &dave] {
        assert!(
            !log.contains(&hash[hash.len() - 20..]),
            "a hash was logged: {log}"
        );
    }

    // alice removed: refused at once, although her verdict is cached.
    replace_file(&path, &format!("bob:{bob}\n"));
    assert!(!curl_login(&proxy, &http, "alice", "alice-pw"));
    assert!(curl_login(&proxy, &http, "bob", "bob-pw"));
}

#[test]
fn auth_cache_ttl_remembers_logins_and_zero_disables_it() {
    for (ttl, expected_calls) in [("'1 minute'", 1), ("0", 3)] {
        let proxy = RunningProxy::start(&seed_policy(&format!(
            "require_auth = true, auth_cache_ttl = {ttl}"
        )));
        for _ in 0..3 {
            let mut stream = connect(proxy.addr);
            assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
            assert_eq!(
                login(&mut stream, USER.as_bytes(), PASSWORD.as_bytes()),
                [1, 0]
            );
        }
        let calls = recorded_calls(proxy.dir());
        assert_eq!(
            calls.len(),
            expected_calls,
            "auth_cache_ttl = {ttl}: {calls:?}"
        );
    }
    let bad = ProxyCommand::with_policy(&seed_policy("auth_cache_ttl = '2 days'")).run_to_exit();
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("auth_cache_ttl"), "{}", bad.stderr);
}

/// The RFC 1929 status the proxy answers to `user`/`password`.
fn login_status(proxy: &RunningProxy, user: &str, password: &str) -> [u8; 2] {
    let mut stream = connect(proxy.addr);
    assert_eq!(greet(&mut stream, &[USER_PASS]), [5, USER_PASS]);
    login(&mut stream, user.as_bytes(), password.as_bytes())
}

#[test]
fn the_example_policy_serves_its_documented_user() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/proxy-passwords.lua"
    );
    let proxy = ProxyCommand::with_args(&["--proxy-config", example])
        .env("PROXY_LISTEN", "127.0.0.1:0")
        .start();
    // The login alone: as shipped, the example keeps the default
    // prohibited destinations, so no loopback test server is reachable.
    assert_eq!(login_status(&proxy, "proxyuser", "secretpassword"), [1, 0]);
    assert_eq!(login_status(&proxy, "proxyuser", "secret"), [1, 1]);
    assert_eq!(login_status(&proxy, "some.one", "secret"), [1, 0]);
}

#[test]
fn hash_password_prints_hashes_third_party_tools_accept() {
    let hash_password = |args: &[&str], input: &str| {
        let mut command = Command::new(PROXY_BIN);
        command.arg("hash-password").args(args);
        run_tool(&mut command, Some(input.as_bytes().to_vec()))
    };
    let out = hash_password(&[], "s3cret-pw\n");
    out.assert_success("hash-password");
    let argon2 = out.stdout_text().trim().to_owned();
    assert!(
        argon2.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{argon2}"
    );
    assert!(python_verifies_argon2(&argon2, "s3cret-pw"));
    assert!(!python_verifies_argon2(&argon2, "s3cret-pw\n"));

    let out = hash_password(&["--algorithm", "bcrypt", "--cost", "4"], "s3cret-pw\r\n");
    out.assert_success("hash-password --algorithm bcrypt");
    assert!(python_verifies_bcrypt(
        out.stdout_text().trim(),
        "s3cret-pw"
    ));

    for (args, input, message) in [
        (&[][..], "", "no password"),
        (&[][..], "\n", "empty"),
        (&["--algorithm", "md5"][..], "x\n", "unknown algorithm"),
        (&["--cost", "4"][..], "x\n", "cost does not apply"),
    ] {
        let out = hash_password(args, input);
        out.assert_failure("bad hash-password input");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn a_config_epoch_bump_rereads_the_credential_file_at_once() {
    let policy = with_http_listener(&credentials_policy("", "check_interval = '1 hour'"));
    let (alice, bob) = (
        python_argon2id("alice-pw"),
        htpasswd_bcrypt("bob", "bob-pw"),
    );
    let proxy = start(&policy, &format!("alice:{alice}\n"));
    let http = HttpServer::start();
    assert!(curl_login(&proxy, &http, "alice", "alice-pw"));
    replace_file(&proxy.dir().join("users"), &format!("bob:{bob}\n"));
    // Within the hour the file is not looked at...
    assert!(!curl_login(&proxy, &http, "bob", "bob-pw"));
    // ...but a reload of the policy reads it.
    let reply = curl(
        proxy.http_addr(),
        "/api/admin/bump-config-epoch",
        &["-X", "POST"],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        curl_login(&proxy, &http, "bob", "bob-pw"),
        "{}",
        proxy.output_dump()
    );
    assert!(!curl_login(&proxy, &http, "alice", "alice-pw"));
}
