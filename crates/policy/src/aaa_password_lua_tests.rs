//! `kumo.aaa.verify_password`, `hash_password` and `load_credentials` on
//! bare Lua states. Hashes from Python's argon2-cffi (`m=64,t=1,p=1`),
//! `htpasswd -B` and `htpasswd -s`, for the password `correct horse`.

use crate::{aaa_registrar, AaaContext, LuaAuthResult};
use aaa::IdentityContext;
use mlua::Lua;
use std::sync::Arc;

const ARGON2ID: &str = "$argon2id$v=19$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ";
const BCRYPT: &str = "$2y$05$QuyJpSC4r0u7KEywoFQOM.n35Y1M/JxlNSdSGRW47P6kQKhsN73ti";
const LDAP_SHA: &str = "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=";

fn state(ctx: &Arc<AaaContext>) -> Lua {
    let lua = Lua::new();
    crate::kumo_module::register(&lua, &Default::default()).unwrap();
    aaa_registrar(ctx.clone())(&lua).unwrap();
    lua.globals().set("ARGON2ID", ARGON2ID).unwrap();
    lua.globals().set("BCRYPT", BCRYPT).unwrap();
    lua.globals().set("LDAP_SHA", LDAP_SHA).unwrap();
    lua
}

fn error_of(lua: &Lua, code: &str) -> String {
    lua.load(code).exec().unwrap_err().to_string()
}

#[test]
fn verify_password_accepts_refuses_and_names_errors() {
    let lua = state(&AaaContext::new());
    let results: (bool, bool, bool, bool) = lua
        .load(
            r#"
            local v = kumo.aaa.verify_password
            return v(ARGON2ID, 'correct horse'), v(BCRYPT, 'wrong'),
              v(LDAP_SHA, 'correct horse', { allow_weak = true }), v(BCRYPT, 'correct horse')
            "#,
        )
        .eval()
        .unwrap();
    assert_eq!(results, (true, false, true, true));
    let weak = error_of(&lua, "kumo.aaa.verify_password(LDAP_SHA, 'correct horse')");
    assert!(
        weak.contains("kumo.aaa.verify_password") && weak.contains("{SHA}"),
        "{weak}"
    );
    assert!(weak.contains("weak"), "{weak}");
    let malformed = error_of(&lua, "kumo.aaa.verify_password(ARGON2ID:sub(1, 40), 'x')");
    assert!(malformed.contains("malformed argon2id"), "{malformed}");
    let unknown = error_of(&lua, "kumo.aaa.verify_password('secret', 'secret')");
    assert!(unknown.contains("unrecognized"), "{unknown}");
    let bad_key = error_of(
        &lua,
        "kumo.aaa.verify_password(BCRYPT, 'x', { weak = true })",
    );
    assert!(
        bad_key.contains("weak") && bad_key.contains("unknown field"),
        "{bad_key}"
    );
    let not_string = error_of(&lua, "kumo.aaa.verify_password(BCRYPT, nil)");
    assert!(
        not_string.contains("the password must be a string"),
        "{not_string}"
    );
}

#[test]
fn hash_password_makes_verifiable_hashes() {
    let lua = state(&AaaContext::new());
    let (hash, ok): (String, bool) = lua
        .load(
            r#"
            local h = kumo.aaa.hash_password('s3cret', { algorithm = 'argon2id', m_cost = 64, t_cost = 1 })
            return h, kumo.aaa.verify_password(h, 's3cret')
            "#,
        )
        .eval()
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
    assert!(ok);
    let bcrypt: String = lua
        .load("return kumo.aaa.hash_password('s3cret', { algorithm = 'bcrypt', cost = 4 })")
        .eval()
        .unwrap();
    assert!(bcrypt.starts_with("$2b$04$"), "{bcrypt}");
    for (code, expected) in [
        ("kumo.aaa.hash_password('')", "empty"),
        (
            "kumo.aaa.hash_password('x', { algorithm = 'md5' })",
            "unknown variant",
        ),
        (
            "kumo.aaa.hash_password('x', { cost = 4 })",
            "cost does not apply",
        ),
    ] {
        let err = error_of(&lua, code);
        assert!(
            err.contains("kumo.aaa.hash_password") && err.contains(expected),
            "{err}"
        );
    }
}

#[test]
fn credentials_check_returns_auth_info_or_false() {
    let lua = state(&AaaContext::new());
    lua.globals()
        .set(
            "FILE",
            format!("# test users\nalice:{ARGON2ID}:ops, premium\nbob:{BCRYPT}\n"),
        )
        .unwrap();
    let (alice, bob, wrong, unknown, missing, empty): (
        LuaAuthResult,
        LuaAuthResult,
        bool,
        bool,
        bool,
        bool,
    ) = lua
        .load(
            r#"
            local creds = kumo.aaa.load_credentials { key_data = FILE }
            assert(tostring(creds) == 'Credentials(inline key_data, 2 users)', tostring(creds))
            return creds:check('alice', 'correct horse', 'ProxyAuthRfc1929'),
              creds:check('bob', 'correct horse'),
              creds:check('alice', 'nope'), creds:check('nobody', 'correct horse'),
              creds:check('alice', nil), creds:check('alice', '')
            "#,
        )
        .eval()
        .unwrap();
    let LuaAuthResult::AuthInfo(alice) = alice else {
        panic!("{alice:?}")
    };
    assert_eq!(alice.identities[0].identity, "alice");
    assert_eq!(
        alice.identities[0].context,
        IdentityContext::ProxyAuthRfc1929
    );
    assert_eq!(alice.groups, ["ops", "premium"]);
    let LuaAuthResult::AuthInfo(bob) = bob else {
        panic!("{bob:?}")
    };
    assert_eq!(bob.identities[0].context, IdentityContext::GenericAuth);
    assert!(bob.groups.is_empty());
    assert!(!wrong && !unknown && !missing && !empty);
    let context = error_of(
        &lua,
        "kumo.aaa.load_credentials { key_data = FILE }:check('alice', 'x', 'Nope')",
    );
    assert!(
        context.contains("credentials:check: unknown identity context"),
        "{context}"
    );
}

#[test]
fn every_state_shares_one_parsed_file() {
    let ctx = AaaContext::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::fs::write(&path, format!("alice:{ARGON2ID}\n")).unwrap();
    let load = format!(
        "CREDS = kumo.aaa.load_credentials({:?}, {{ check_interval = '1 minute' }})",
        path.display().to_string()
    );
    let (first, second) = (state(&ctx), state(&ctx));
    first.load(&load).exec().unwrap();
    second.load(&load).exec().unwrap();
    let a: mlua::AnyUserData = first.globals().get("CREDS").unwrap();
    let b: mlua::AnyUserData = second.globals().get("CREDS").unwrap();
    let a = a.borrow::<super::CredentialsObject>().unwrap().0.clone();
    let b = b.borrow::<super::CredentialsObject>().unwrap().0.clone();
    assert!(Arc::ptr_eq(&a, &b), "one copy for the process");
}

#[test]
fn load_errors_name_the_function_the_file_and_the_line() {
    let lua = state(&AaaContext::new());
    let missing = error_of(&lua, "kumo.aaa.load_credentials('/nonexistent/users')");
    assert!(
        missing.contains("kumo.aaa.load_credentials") && missing.contains("/nonexistent/users"),
        "{missing}"
    );
    let weak = error_of(
        &lua,
        "kumo.aaa.load_credentials { key_data = 'bob:' .. LDAP_SHA }",
    );
    assert!(weak.contains("line 1") && weak.contains("weak"), "{weak}");
    assert!(!weak.contains(LDAP_SHA), "{weak}");
    lua.load("kumo.aaa.load_credentials({ key_data = 'bob:' .. LDAP_SHA }, { allow_weak = true })")
        .exec()
        .unwrap();
    let interval = error_of(
        &lua,
        "kumo.aaa.load_credentials({ key_data = '' }, { check_interval = 'soon' })",
    );
    assert!(interval.contains("invalid duration"), "{interval}");
}
