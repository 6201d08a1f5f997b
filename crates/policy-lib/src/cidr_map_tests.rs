use crate::test_support::{assert_error, run_fresh};

/// The examples of upstream's `kumo.cidr.make_map` page, unchanged (the
/// last one registers a handler, which is not called here).
#[test]
fn upstream_examples() {
    run_fresh(
        r#"
local cmap = kumo.cidr.make_map()
cmap['127.0.0.1'] = 'bar'
assert(cmap['127.0.0.1'] == 'bar')
assert(cmap['not.set'] == nil)

local cmap = kumo.cidr.make_map()

cmap['10.0.0.0/24'] = '10. block'

-- any address in that /24 will return the mapped value
assert(cmap['10.0.0.1'] == '10. block')
assert(cmap['10.0.0.42'] == '10. block')

-- other addresses won't
assert(cmap['100.0.0.100'] == nil)

local cmap = kumo.cidr.make_map {
  ['127.0.0.0/24'] = 'loopback',
  ['10.0.0.0/24'] = 'lan',
}

-- and mutate the table after is has been constructed:
cmap['4.2.4.2'] = 4242
assert(cmap['4.2.4.2'] == 4242)
assert(cmap['127.0.0.5'] == 'loopback')

local SOURCE_CLASSIFICATION = kumo.cidr.make_map {
  ['127.0.0.0/24'] = 'loopback',
  ['10.0.0.0/24'] = 'lan',
}

kumo.on('smtp_server_message_received', function(msg)
  local source_type = SOURCE_CLASSIFICATION[msg:get_meta 'received_from']
end)
assert(SOURCE_CLASSIFICATION['10.0.0.9:2525'] == 'lan')
"#,
    );
}

#[test]
fn most_specific_block_wins_in_any_order() {
    run_fresh(
        r#"
local m = kumo.cidr.make_map {
  ['10.0.0.0/8'] = 'wide',
  ['10.1.0.0/16'] = 'narrow',
  ['10.1.2.3'] = 'host',
  ['::1'] = 'v6 loopback',
  ['2001:db8::/32'] = 'doc',
}
assert(m['10.9.9.9'] == 'wide')
assert(m['10.1.9.9'] == 'narrow')
assert(m['10.1.2.3'] == 'host')
assert(m['::1'] == 'v6 loopback')
assert(m['2001:db8:1::5'] == 'doc')
assert(m['2001:db9::1'] == nil)
-- a wider block added later does not hide narrower ones
m['0.0.0.0/0'] = 'any'
assert(m['10.1.2.3'] == 'host' and m['192.0.2.1'] == 'any')
-- keys with brackets and ports
assert(m['[10.1.2.3]'] == 'host')
assert(m['10.1.2.3:25'] == 'host')
assert(m['[::1]:25'] == 'v6 loopback')
-- tables are copied in and out; nil removes
m['192.0.2.0/24'] = { tier = 'gold', limits = { 1, 2 } }
local v = m['192.0.2.7']
assert(v.tier == 'gold' and v.limits[2] == 2)
v.tier = 'changed'
assert(m['192.0.2.7'].tier == 'gold')
m['192.0.2.0/24'] = nil
assert(m['192.0.2.7'] == 'any')
-- look-ups of non-addresses and non-strings are nil
assert(m[42] == nil and m['::zz'] == nil and m[{}] == nil)
"#,
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.cidr.make_map { ['10.0.0.1/24'] = 1 }",
        &[
            "kumo.cidr.make_map: 10.0.0.1/24 is not a valid CIDR block",
            "did you mean 10.0.0.0/24?",
        ],
    );
    assert_error(
        "kumo.cidr.make_map { ['nope'] = 1 }",
        &["kumo.cidr.make_map: nope is not an IP address or CIDR block"],
    );
    assert_error(
        "kumo.cidr.make_map('x')",
        &["kumo.cidr.make_map: bad argument #1"],
    );
    assert_error(
        "local m = kumo.cidr.make_map() m['10.0.0.0/33'] = 1",
        &["kumo.cidr map assignment: 10.0.0.0/33 is not an IP address"],
    );
    assert_error(
        "local m = kumo.cidr.make_map() m['10.0.0.0/8'] = print",
        &["kumo.cidr map assignment: cannot encode a function value"],
    );
}
