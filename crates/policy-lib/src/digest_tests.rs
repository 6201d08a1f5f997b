use crate::test_support::{assert_error, run_fresh};

/// The example of upstream's `kumo.digest` page, unchanged.
#[test]
fn upstream_binary_result_example() {
    run_fresh(
        r#"
-- Compute the digest of 'hello'
local d = kumo.digest.sha1 'hello'
-- Demonstrate the various output properties of the digest object
assert(tostring(d) == d.hex)
assert(d.hex == 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d')
assert(
  d.bytes
    == '\xaa\xf4\xc6\x1d\xdc\xc5\xe8\xa2\xda\xbe\xde\x0f\x3b\x48\x2c\xd9\xae\xa9\x43\x4d'
)
assert(d.base32 == 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')
assert(d.base32_nopad == 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')
assert(d.base32hex == 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD')
assert(d.base64 == 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')
assert(d.base64_nopad == 'qvTGHdzF6KLavt4PO0gs2a6pQ00')
assert(d.base64url == 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')
assert(d.base64url_nopad == 'qvTGHdzF6KLavt4PO0gs2a6pQ00')
"#,
    );
}

/// The HMAC examples of upstream's pages (one per algorithm), unchanged
/// except hmac_sha384, whose page shows a truncated digest; its full value
/// is upstream's own test value.
#[test]
fn upstream_hmac_examples() {
    run_fresh(
        r#"
local kumo = require 'kumo'
local key_bytes = {
  key_data = 'your key',
}
local hmac = kumo.digest.hmac_sha1(key_bytes, 'your message')
assert(hmac.hex == '317d0dfd868a5c06c9444ac1328aa3e2bfd29fb2')
local hmac = kumo.digest.hmac_sha224(key_bytes, 'your message')
assert(hmac.hex == '991ff8089bd2a781d10c0568cbf2717794ac7b7fbcc9db049f19fc61')
local hmac = kumo.digest.hmac_sha256(key_bytes, 'your message')
assert(
  hmac.hex
    == '87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c'
)
local hmac = kumo.digest.hmac_sha384(key_bytes, 'your message')
assert(
  hmac.hex
    == 'cd274957b95ce192d41dd52f83fd2eb9277aa2fa210ec798ee16e978801a89b7e7b956af3976d1a50a60ece87c7b2a66'
)
local hmac = kumo.digest.hmac_sha512(key_bytes, 'your message')
assert(
  hmac.hex
    == '2f5ddcdbd062a5392f07b0cd0262bf52c21bfb3db513296240cca8d5accc09d18d96be0a94995be4494c032f1eda946ad549fb61ccbe985d160f0b2f9588d34b'
)
"#,
    );
}

#[test]
fn known_digests() {
    run_fresh(
        r#"
local utils = require 'policy-extras.policy_utils'
utils.assert_eq(kumo.digest.crc32('something').hex, '09da31fb')
utils.assert_eq(kumo.digest.sha1('foo').hex, '0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33')
utils.assert_eq(kumo.digest.sha3_384('foo').hex,
  '665551928d13b7d84ee02734502b018d896a0fb87eed5adb4c87ba91bbd6489410e11b0fbcc06ed7d0ebad559e5d3bb5')
utils.assert_eq(kumo.digest.sha256('abc').hex,
  'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
utils.assert_eq(kumo.digest.sha224('abc').hex,
  '23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7')
utils.assert_eq(kumo.digest.sha384('abc').hex,
  'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7')
utils.assert_eq(kumo.digest.sha512('abc').hex,
  'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f')
utils.assert_eq(kumo.digest.sha512_256('abc').hex,
  '53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23')
utils.assert_eq(kumo.digest.sha3_224('').hex,
  '6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7')
utils.assert_eq(kumo.digest.sha3_256('abc').hex,
  '3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532')
utils.assert_eq(kumo.digest.sha3_512('abc').hex,
  'b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0')
"#,
    );
}

/// Several arguments are one message; non-strings count as their JSON.
#[test]
fn arguments_concatenate_and_tables_hash_as_json() {
    run_fresh(
        r#"
assert(kumo.digest.sha256('ab', 'c').hex == kumo.digest.sha256('abc').hex)
assert(kumo.digest.sha256({1, 2}).hex == kumo.digest.sha256('[1,2]').hex)
assert(kumo.digest.sha256(42, true).hex == kumo.digest.sha256('42true').hex)
assert(kumo.digest.sha256('a') == kumo.digest.sha256('a'))
assert(kumo.digest.sha256('a') ~= kumo.digest.sha256('b'))
"#,
    );
}

#[test]
fn hmac_key_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "your key").unwrap();
    run_fresh(&format!(
        "assert(kumo.digest.hmac_sha1({:?}, 'your message').hex == '317d0dfd868a5c06c9444ac1328aa3e2bfd29fb2')",
        path.display().to_string()
    ));
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.digest.sha256(function() end)",
        &["kumo.digest.sha256: ", "cannot encode a function value"],
    );
    assert_error(
        "kumo.digest.hmac_sha256({ key_data = 'k' })",
        &["kumo.digest.hmac_sha256: bad argument #2"],
    );
    assert_error(
        "kumo.digest.hmac_sha256({ vault_mount = 'secret', vault_path = 'p' }, 'm')",
        &["kumo.digest.hmac_sha256: vault keysources are not supported"],
    );
    assert_error(
        "kumo.digest.hmac_sha256('/nonexistent/hmac.key', 'm')",
        &["kumo.digest.hmac_sha256: ", "/nonexistent/hmac.key"],
    );
}

/// A key given inline never shows up in an error message.
#[test]
fn inline_key_is_not_in_errors() {
    let message =
        crate::test_support::error_of("kumo.digest.hmac_sha256({ key_data = { 'hunter2' } }, 'm')");
    assert!(message.contains("kumo.digest.hmac_sha256"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}
