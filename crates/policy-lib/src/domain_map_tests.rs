use crate::test_support::{assert_error, run_fresh};

/// The examples of upstream's `kumo.domain_map.new` page, unchanged.
#[test]
fn upstream_examples() {
    run_fresh(
        r#"
local dmap = kumo.domain_map.new()
dmap['foo'] = 'bar'
assert(dmap['foo'] == 'bar')
assert(dmap['not.set'] == nil)

local dmap = kumo.domain_map.new()

dmap['*.example.com'] = 'wildcard'

-- An exact lookup for example.com won't match the wildcard
assert(dmap['example.com'] == nil)

-- but any nodes "below" that will match the wildcard entry:
assert(dmap['foo.example.com'] == 'wildcard')

-- Any explicitly added entries will take precedence
-- over the wildcard:
dmap['explicit.example.com'] = 'explicit'
assert(dmap['explicit.example.com'] == 'explicit')

local dmap = kumo.domain_map.new {
  ['*.woot.com'] = 123,
  ['example.com'] = 24,
}

-- and mutate the table after is has been constructed:
dmap['*.example.com'] = 42

assert(dmap['lemon.example.com'] == 42)
assert(dmap['example.com'] == 24)
assert(dmap['woot.com'] == nil)
assert(dmap['aa.woot.com'] == 123)
"#,
    );
}

#[test]
fn nearest_wildcard_case_and_removal() {
    run_fresh(
        r#"
local d = kumo.domain_map.new {
  ['*.example.com'] = 'outer',
  ['*.inner.example.com'] = 'inner',
  ['omg.wtf.woot.example.com'] = 'deep',
}
assert(d['a.b.example.com'] == 'outer')
assert(d['x.inner.example.com'] == 'inner')
assert(d['inner.example.com'] == 'outer')
-- an exact entry deeper down does not hide the wildcard above it
assert(d['woot.example.com'] == 'outer')
assert(d['omg.wtf.woot.example.com'] == 'deep')
assert(d['A.B.EXAMPLE.COM.'] == 'outer')
d['*.inner.example.com'] = nil
assert(d['x.inner.example.com'] == 'outer')
d['t.example.com'] = { list = { 'a' } }
assert(d['t.example.com'].list[1] == 'a')
assert(d[1] == nil)
"#,
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.domain_map.new(5)",
        &["kumo.domain_map.new: bad argument #1"],
    );
    assert_error(
        "kumo.domain_map.new { ['a.com'] = coroutine.create(print) }",
        &["kumo.domain_map.new: cannot encode a thread value"],
    );
    assert_error(
        "local d = kumo.domain_map.new() d[{}] = 1",
        &["kumo.domain_map assignment: bad argument #1"],
    );
}
