use crate::test_support::{assert_error, run_fresh};

/// The examples of upstream's `kumo.uuid` pages, unchanged.
#[test]
fn upstream_examples() {
    run_fresh(
        r#"
local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'
assert(tostring(u) == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
assert(u.hyphenated == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
assert(u.simple == '699946303e2711ef91fccc28aa0a5c5a')
assert(u.braced == '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}')
assert(u.urn == 'urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a')
assert(
  u.bytes
    == '\x69\x99\x46\x30\x3e\x27\x11\xef\x91\xfc\xcc\x28\xaa\x0a\x5c\x5a'
)

local u = kumo.uuid.parse '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}'
assert(u.hyphenated == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
"#,
    );
}

/// Each generator makes its version; two calls never repeat.
#[test]
fn generators_make_their_version() {
    run_fresh(
        r#"
for version, name in pairs { [1] = 'new_v1', [4] = 'new_v4', [6] = 'new_v6', [7] = 'new_v7' } do
  local a, b = kumo.uuid[name](), kumo.uuid[name]()
  assert(a ~= b, name)
  assert(a.hyphenated:sub(15, 15) == tostring(version), name .. ' ' .. a.hyphenated)
  assert(kumo.uuid.parse(a.simple) == a)
end
-- v7 sorts by time
local first = kumo.uuid.new_v7()
local second = kumo.uuid.new_v7()
assert(first.simple < second.simple)
"#,
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.uuid.parse 'not-a-uuid'",
        &["kumo.uuid.parse: invalid UUID"],
    );
    assert_error("kumo.uuid.parse()", &["kumo.uuid.parse: bad argument #1"]);
}
