use crate::test_support::{assert_error, run_fresh};

/// Round trips and known values for every upstream variant.
#[test]
fn encoders_and_decoders() {
    run_fresh(
        r#"
local e = kumo.encode
assert(e.base64_encode('hello') == 'aGVsbG8=')
assert(e.base64_nopad_encode('hello') == 'aGVsbG8')
assert(e.base64url_encode('\xfb\xff') == '-_8=')
assert(e.base64url_nopad_encode('\xfb\xff') == '-_8')
assert(e.base32_encode('hello') == 'NBSWY3DP')
assert(e.base32_encode('hi') == 'NBUQ====')
assert(e.base32_nopad_encode('hi') == 'NBUQ')
assert(e.base32hex_encode('hi') == 'D1KG====')
assert(e.base32hex_nopad_encode('hi') == 'D1KG')
assert(e.hex_encode('\x00\xffA') == '00ff41')
assert(e.hex_decode('00FF41') == '\x00\xffA')
for _, name in ipairs { 'base64', 'base64_nopad', 'base64url', 'base64url_nopad', 'base32',
    'base32_nopad', 'base32hex', 'base32hex_nopad', 'hex' } do
  local data = 'any \0 bytes \xff'
  assert(e[name .. '_decode'](e[name .. '_encode'](data)) == data, name)
end
-- missing or excess padding is accepted when decoding, as upstream
assert(e.base64_decode('MmVtYWlsLmxvZwAuY3N2') == '2email.log\0.csv')
assert(e.base64_decode('MmVtYWlsLmxvZwAuY3N2=') == '2email.log\0.csv')
assert(e.base64_decode('MmVtYWlsLmxvZwAuY3N2==') == '2email.log\0.csv')
"#,
    );
}

/// The compact-UUID example of upstream's `kumo.uuid` page uses this module.
#[test]
fn upstream_uuid_bytes_example() {
    run_fresh(
        r#"
local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'
assert(
  kumo.encode.base64url_nopad_encode(u.bytes) == 'aZlGMD4nEe-R_MwoqgpcWg'
)
"#,
    );
}

#[test]
fn charsets() {
    run_fresh(
        r#"
local e = kumo.encode
assert(e.charset_decode('iso-8859-1', 'caf\xe9') == 'café')
assert(e.charset_encode('iso-8859-1', 'café') == 'caf\xe9')
assert(e.charset_decode('shift_jis', '\x82\xa0') == 'あ')
assert(e.charset_encode('koi8-r', 'Ж') == '\xf6')
"#,
    );
    assert_error(
        "kumo.encode.charset_encode('iso-8859-1', 'Ж', false)",
        &["kumo.encode.charset_encode: ", "cannot represent"],
    );
    assert_error(
        "kumo.encode.charset_decode('utf-8', '\\xff')",
        &["kumo.encode.charset_decode: input is not valid UTF-8"],
    );
    assert_error(
        "kumo.encode.charset_decode('klingon', 'x')",
        &["kumo.encode.charset_decode: unknown charset"],
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.encode.base64_decode('not base64!')",
        &["kumo.encode.base64_decode: invalid base64 input"],
    );
    assert_error(
        "kumo.encode.hex_decode('abc')",
        &["kumo.encode.hex_decode: invalid hex input"],
    );
    assert_error(
        "kumo.encode.base32_decode('0189')",
        &["kumo.encode.base32_decode: invalid base32 input"],
    );
    assert_error(
        "kumo.encode.base64_encode({})",
        &["kumo.encode.base64_encode: expected a string, got table"],
    );
    assert_error(
        "kumo.encode.base64_decode()",
        &["kumo.encode.base64_decode: bad argument #1"],
    );
}

/// Decoding errors do not repeat the input (it may be a credential).
#[test]
fn decode_errors_do_not_echo_input() {
    let message = crate::test_support::error_of("kumo.encode.base64_decode('s3cr3t-t0ken!')");
    assert!(!message.contains("s3cr3t"), "{message}");
}
