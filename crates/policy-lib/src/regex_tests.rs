use crate::test_support::{assert_error, run_fresh};

/// The examples of upstream's `kumo.regex.compile` page, unchanged.
#[test]
fn upstream_examples() {
    run_fresh(
        r#"
local re = kumo.regex.compile "'([^']+)'\\s+\\((\\d{4})\\)"
local cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
assert(cap[0] == "'Citizen Kane' (1941)")
assert(cap[1] == 'Citizen Kane')
assert(cap[2] == '1941')

local re = kumo.regex.compile "'(?<title>[^']+)'\\s+\\((?<year>\\d{4})\\)"
local cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
assert(cap[0] == "'Citizen Kane' (1941)")
assert(cap.title == 'Citizen Kane')
assert(cap.year == '1941')

local re = kumo.regex.compile 'oo'
assert(re:is_match 'foo')

local re = kumo.regex.compile 'o+'
assert(re:find 'food' == 'oo')
assert(re:find 'fooood' == 'oooo')

local re = kumo.regex.compile '\\b\\w{13}\\b'
local res =
  re:find_all 'Retroactively relinquishing remunerations is reprehensible.'
assert(
  kumo.json_encode(res)
    == '["Retroactively","relinquishing","remunerations","reprehensible"]'
)

local re = kumo.regex.compile '[^01]+'
assert(re:replace('1078910', '') == '1010')

local re = kumo.regex.compile '(?P<last>[^,\\s]+),\\s+(?P<first>\\S+)'
assert(
  re:replace('Springsteen, Bruce', '$first $last') == 'Bruce Springsteen'
)

local re = kumo.regex.compile '[ \\t]+'
local res = re:split 'a b \t  c\td    e'
assert(kumo.json_encode(res) == '["a","b","c","d","e"]')
"#,
    );
}

#[test]
fn other_methods_and_escape() {
    run_fresh(
        r#"
local re = kumo.regex.compile 'a(x)?b'
assert(re:captures('zzz') == nil)
local cap = re:captures('ab')
assert(cap[0] == 'ab' and cap[1] == nil)
assert(re:find('zzz') == nil)
assert(kumo.json_encode(re:find_all('zzz')) == '[]')
assert(re:is_match('zzz') == false)
local digits = kumo.regex.compile '\\d'
assert(digits:replace_all('a1b2c3', '#') == 'a#b#c#')
assert(digits:replacen('a1b2c3', 2, '#') == 'a#b#c3')
assert(digits:replacen('a1b2c3', 0, '#') == 'a#b#c#')
assert(digits:replace('a1b2', '$$') == 'a$b2')
-- fancy-regex extensions: look-around and back-references
assert(kumo.regex.compile('foo(?=bar)'):find('foobar') == 'foo')
assert(kumo.regex.compile('(\\w)\\1'):find('abccd') == 'cc')
local escaped = kumo.regex.escape('a.b*c')
assert(escaped == 'a\\.b\\*c')
assert(kumo.regex.compile(escaped):is_match('a.b*c'))
assert(not kumo.regex.compile(escaped):is_match('aXbbc'))
assert(require('kumo.regex').compile('x'):is_match('x'))
"#,
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.regex.compile('(')",
        &["kumo.regex.compile: invalid pattern"],
    );
    assert_error(
        "kumo.regex.compile()",
        &["kumo.regex.compile: bad argument #1"],
    );
    assert_error(
        "kumo.regex.compile('x'):captures()",
        &["regex:captures: bad argument #1"],
    );
    assert_error(
        "kumo.regex.compile('x'):replacen('x', -1, 'y')",
        &["regex:replacen: bad argument #2"],
    );
}

#[test]
fn oversize_patterns_are_refused() {
    assert_error(
        "kumo.regex.compile(string.rep('a', 40000))",
        &["kumo.regex.compile: pattern is 40000 bytes, more than the limit of 32768"],
    );
    // Small text, huge program: counted repetition of a Unicode class.
    assert_error(
        "kumo.regex.compile('\\\\w{1000}{1000}')",
        &["kumo.regex.compile: invalid pattern"],
    );
}

/// Catastrophic backtracking stops at the backtrack limit with an error.
#[test]
fn backtracking_is_bounded() {
    assert_error(
        "kumo.regex.compile('(a*)*\\\\1b'):is_match(string.rep('a', 40))",
        &["regex:is_match: ", "backtrack"],
    );
}
