use crate::test_support::{assert_error, run_fresh};

/// The examples of upstream's `kumo.string` pages, unchanged.
#[test]
fn upstream_examples() {
    run_fresh(
        r#"
kumo.string.ends_with('hello world', 'world')
kumo.string.starts_with('hello world', 'hello')
assert(kumo.string.psl_domain 'www.example.com' == 'example.com')
assert(kumo.string.psl_suffix 'www.example.com' == 'com')
assert(kumo.string.replace('this is old', 'old', 'new') == 'this is new')
assert(
  kumo.string.replacen('foo foo 123 foo', 'foo', 'new', 2)
    == 'new new 123 foo'
)
assert(
  kumo.json_encode(kumo.string.rsplit('Mary had a little lamb', ' '))
    == '["lamb","little","a","had","Mary"]'
)
assert(
  kumo.json_encode(kumo.string.rsplitn('Mary had a little lamb', 3, ' '))
    == '["lamb","little","Mary had a"]'
)
assert(
  kumo.json_encode(kumo.string.split('Mary had a little lamb', ' '))
    == '["Mary","had","a","little","lamb"]'
)
assert(
  kumo.json_encode(
    kumo.string.split_ascii_whitespace 'Mary had a little lamb'
  ) == '["Mary","had","a","little","lamb"]'
)
assert(
  kumo.json_encode(kumo.string.split_whitespace 'Mary had a little lamb'
)
    == '["Mary","had","a","little","lamb"]'
)
assert(
  kumo.json_encode(kumo.string.splitn('Mary had a little lamb', 3, ' '))
    == '["Mary","had","a little lamb"]'
)
assert(kumo.string.trim '\n Hello\tworld\t\n' == 'Hello\tworld')
assert(kumo.string.trim_end '\n Hello\tworld\t\n' == '\n Hello\tworld')
assert(kumo.string.trim_start '\n Hello\tworld\t\n' == 'Hello\tworld\t\n')
"#,
    );
}

/// upstream's `wrap` page example, unchanged (it needs policy_utils).
#[test]
fn upstream_wrap_example() {
    run_fresh(
        r#"
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

utils.assert_eq(kumo.string.wrap 'hello', 'hello')

local long_string = string.rep('A', 200)
local expect_wrapped = string.rep('A', 100)
  .. '\r\n\t'
  .. string.rep('A', 100)
utils.assert_eq(kumo.string.wrap(long_string, 75, 100), expect_wrapped)

local long_string_spaced = string.rep('hello there ', 10)
utils.assert_eq(
  kumo.string.wrap(long_string_spaced, 75, 100),
  'hello there hello there hello there hello there hello there hello there\r\n'
    .. '\thello there hello there hello there hello there'
)
"#,
    );
}

#[test]
fn wrap_cases() {
    let cases: &[(&str, &str)] = &[
        ("foo", "foo"),
        ("hi there", "hi there"),
        ("hello world", "hello\r\n\tworld"),
        ("hello world ", "hello\r\n\tworld"),
        (
            "hello world foo bar baz woot woot",
            "hello\r\n\tworld foo\r\n\tbar baz\r\n\twoot woot",
        ),
        (
            "hi there breakmepleaseIamtoolong",
            "hi there\r\n\tbreakmepleaseIa\r\n\tmtoolong",
        ),
    ];
    for (input, expect) in cases {
        let got = super::wrap(input.as_bytes(), 10, 15);
        assert_eq!(String::from_utf8(got).unwrap(), *expect, "input {input:?}");
    }
}

#[test]
fn predicates_split_and_psl() {
    run_fresh(
        r#"
assert(kumo.string.ends_with('hello world', 'world') == true)
assert(kumo.string.ends_with('hello world', 'hello') == false)
assert(kumo.string.starts_with('hello world', 'hello') == true)
assert(kumo.string.starts_with('\xff\x00bin', '\xff\x00') == true)
assert(kumo.json_encode(kumo.string.split('', ',')) == '[""]')
assert(kumo.json_encode(kumo.string.split_whitespace('   ')) == '[]')
assert(kumo.string.psl_domain 'WWW.Example.CO.UK.' == 'example.co.uk')
assert(kumo.string.psl_suffix 'a.b.github.io' == 'github.io')
assert(kumo.string.psl_domain 'com' == nil)
assert(require('kumo.string').trim(' x ') == 'x')
"#,
    );
}

#[test]
fn eval_template() {
    run_fresh(
        r#"
assert(kumo.string.eval_template('example.json', [[{{name}}]], { name = 'John' }) == '"John"')
assert(kumo.string.eval_template('x.txt', 'Hi {{ who }}!', { who = '<b>' }) == 'Hi <b>!')
assert(kumo.string.eval_template('x.html', '{{ who }}', { who = '<b>' }) == '&lt;b&gt;')
assert(kumo.string.eval_template('x.txt', '{{ who }}', {}, 'Static') == '{{ who }}')
"#,
    );
}

/// The first `eval_template` example of upstream's page, unchanged (it
/// prints); the second one's template is in the next test.
#[test]
fn upstream_eval_template_example_runs_unchanged() {
    run_fresh(
        r#"
-- This will print `"John"`
print(
  kumo.string.eval_template('example.json', [[{{name}}]], { name = 'John' })
)
"#,
    );
}

/// The shape of upstream's second `eval_template` example, with its
/// output checked instead of printed.
#[test]
fn upstream_eval_template_log_record_example() {
    run_fresh(
        r#"
local kumo = require 'kumo'
local log_record = kumo.serde.json_parse [=[
{
    "type": "Delivery",
    "id": "1d98076abbbc11ed940250ebf67f93bd",
    "size": 1047,
    "response": { "code": 250, "content": "OK" },
    "feedback_report": null,
    "tls_peer_subject_name": ["C=US","ST=CA"]
}
]=]
local out = kumo.string.eval_template(
  'log.json',
  [[{
{%- for key, value in log_record | items | reject("none") -%}
{{key}}: {{value }}
{%- if not loop.last %},{% endif %}
{%- endfor -%}
}
]],
  { log_record = log_record }
)
local back = kumo.serde.json_parse(out)
assert(back.type == 'Delivery' and back.size == 1047, out)
assert(back.response.code == 250 and back.tls_peer_subject_name[2] == 'ST=CA', out)
assert(back.feedback_report == nil, out)
"#,
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.string.split('a')",
        &["kumo.string.split: bad argument #2"],
    );
    assert_error(
        "kumo.string.splitn('a b', -1, ' ')",
        &["kumo.string.splitn: bad argument #2"],
    );
    assert_error(
        "kumo.string.trim({})",
        &["kumo.string.trim: bad argument #1"],
    );
    assert_error(
        "kumo.string.wrap('x', 1, 0)",
        &["kumo.string.wrap: HARD_LIMIT must be at least 1"],
    );
    assert_error(
        "kumo.string.eval_template('t', '{% for %}', {})",
        &["kumo.string.eval_template: syntax error"],
    );
    assert_error(
        "kumo.string.eval_template('t', 'x', {}, 'Handlebars')",
        &["kumo.string.eval_template: the Handlebars dialect is not supported"],
    );
    assert_error(
        "kumo.string.eval_template('t', 'x', { f = print })",
        &["kumo.string.eval_template: cannot encode a function value"],
    );
}

/// A template that loops without end runs out of fuel instead.
#[test]
fn template_work_is_bounded() {
    assert_error(
        "kumo.string.eval_template('t', '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}', {})",
        &["kumo.string.eval_template: ", "fuel"],
    );
}
