use crate::test_support::{assert_error, error_of, run_fresh};

#[test]
fn loads_inline_and_file_keysources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, b"file \x00 secret").unwrap();
    run_fresh(&format!(
        r#"
assert(kumo.secrets.load {{ key_data = 'inline secret' }} == 'inline secret')
assert(kumo.secrets.load({:?}) == 'file \0 secret')
assert(require('kumo.secrets').load {{ key_data = 'x' }} == 'x')
"#,
        path.display().to_string()
    ));
}

#[test]
fn vault_keysources_are_refused_clearly() {
    // Upstream's example keysource, as its page writes it.
    assert_error(
        r#"
local passwd = kumo.secrets.load {
  vault_mount = 'secret',
  vault_path = 'example.com-passwd',
}
"#,
        &["kumo.secrets.load: vault keysources are not supported"],
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.secrets.load(42)",
        &["kumo.secrets.load: a keysource must be a file path or { key_data = '...' }, got integer"],
    );
    assert_error(
        "kumo.secrets.load { keydata = 'typo' }",
        &["kumo.secrets.load: a keysource must be"],
    );
    assert_error(
        "kumo.secrets.load '/nonexistent/secret/file'",
        &["kumo.secrets.load: reading /nonexistent/secret/file"],
    );
    let message = error_of("kumo.secrets.load { key_data = { 'hunter2' } }");
    assert!(!message.contains("hunter2"), "{message}");
}
