use crate::test_support::{assert_error, run_fresh};

#[test]
fn json_parse_and_encode() {
    run_fresh(
        r#"
local v = kumo.serde.json_parse [[
{
  // C++ comment
  "a": null, /* C comment */
  "b": [1, 2.5, "three", true],
  # shell comment
  "c": {"d": {}}, "e": []
}
]]
assert(v.a == nil)
assert(math.type(v.b[1]) == 'integer' and math.type(v.b[2]) == 'float')
assert(v.b[3] == 'three' and v.b[4] == true)
assert(kumo.serde.json_encode(v.c) == '{"d":{}}')
assert(kumo.serde.json_encode(v.e) == '[]')
assert(kumo.serde.json_encode({1, 2, 3}) == '[1,2,3]')
assert(kumo.serde.json_encode({ a = 1 }) == '{"a":1}')
assert(kumo.serde.json_encode({ [1] = 'x', [3] = 'y' }) == '{"1":"x","3":"y"}')
assert(kumo.serde.json_encode('s') == '"s"')
assert(kumo.serde.json_encode(nil) == 'null')
assert(kumo.serde.json_encode_pretty({ b = 1, a = { 1 } }) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}')
-- the old names are the same functions
assert(kumo.json_encode(kumo.json_parse('[1,{"x":"y"}]')) == '[1,{"x":"y"}]')
assert(kumo.json_encode_pretty({}) == '{}')
"#,
    );
}

#[test]
fn toml_parse_and_encode() {
    run_fresh(
        r#"
local v = kumo.serde.toml_parse [[
title = "x"
when = 1979-05-27T07:32:00Z
[owner]
name = "Tom"
ports = [8000, 8001]
]]
assert(v.title == 'x')
assert(v.when == '1979-05-27T07:32:00Z')
assert(v.owner.name == 'Tom' and v.owner.ports[2] == 8001)
assert(kumo.serde.toml_encode({ a = 1, b = 'two' }) == 'a = 1\nb = "two"\n')
local pretty = kumo.toml_encode_pretty({ t = { list = { 1, 2 } } })
assert(kumo.toml_parse(pretty).t.list[2] == 2)
"#,
    );
}

#[test]
fn yaml_parse_and_encode() {
    run_fresh(
        r#"
local v = kumo.serde.yaml_parse [[
users:
  - name: alice
    admin: true
  - name: bob
count: 2
]]
assert(v.users[1].name == 'alice' and v.users[1].admin == true)
assert(v.count == 2)
assert(kumo.serde.yaml_encode({ a = 1 }) == 'a: 1\n')
assert(kumo.serde.yaml_parse(kumo.serde.yaml_encode(v)).users[2].name == 'bob')
"#,
    );
}

#[test]
fn load_functions_read_files() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("d.json");
    let toml = dir.path().join("d.toml");
    let yaml = dir.path().join("d.yaml");
    std::fs::write(&json, "{\"k\": 1 // note\n}").unwrap();
    std::fs::write(&toml, "k = 2\n").unwrap();
    std::fs::write(&yaml, "k: 3\n").unwrap();
    run_fresh(&format!(
        r#"
assert(kumo.serde.json_load({json:?}).k == 1)
assert(kumo.json_load({json:?}).k == 1)
assert(kumo.serde.toml_load({toml:?}).k == 2)
assert(kumo.toml_load({toml:?}).k == 2)
assert(kumo.serde.yaml_load({yaml:?}).k == 3)
"#,
        json = json.display().to_string(),
        toml = toml.display().to_string(),
        yaml = yaml.display().to_string(),
    ));
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.serde.json_parse('{')",
        &["kumo.serde.json_parse: invalid JSON"],
    );
    assert_error(
        "kumo.json_parse('nope')",
        &["kumo.json_parse: invalid JSON"],
    );
    assert_error(
        "kumo.serde.toml_parse('a = ')",
        &["kumo.serde.toml_parse: invalid TOML at line 1"],
    );
    assert_error(
        "kumo.serde.yaml_parse('a: [')",
        &["kumo.serde.yaml_parse: invalid YAML"],
    );
    assert_error(
        "kumo.serde.json_encode({ f = print })",
        &["kumo.serde.json_encode: cannot encode a function value"],
    );
    assert_error(
        "kumo.serde.json_encode(0/0)",
        &["kumo.serde.json_encode: cannot encode the number"],
    );
    assert_error(
        "local t = {} t.self = t kumo.serde.json_encode(t)",
        &["kumo.serde.json_encode: tables nest deeper than 128 levels"],
    );
    assert_error(
        "kumo.serde.toml_encode(42)",
        &["kumo.serde.toml_encode: cannot encode as toml"],
    );
    assert_error(
        "kumo.serde.json_encode({ [true] = 1 })",
        &["kumo.serde.json_encode: cannot encode a table key of type boolean"],
    );
    assert_error(
        "kumo.serde.json_load('/nonexistent/file.json')",
        &["kumo.serde.json_load: reading /nonexistent/file.json"],
    );
    assert_error(
        "kumo.serde.json_parse()",
        &["kumo.serde.json_parse: bad argument #1"],
    );
}

/// Nesting past the parsers' limits is an error, not a crash.
#[test]
fn deep_nesting_is_refused() {
    assert_error(
        "kumo.serde.json_parse(string.rep('[', 10000))",
        &["kumo.serde.json_parse: invalid JSON: recursion limit exceeded"],
    );
    assert_error(
        "local t = {} for i = 1, 1000 do t = { t } end kumo.serde.yaml_encode(t)",
        &["kumo.serde.yaml_encode: tables nest deeper than 128 levels"],
    );
    assert_error(
        "kumo.serde.yaml_parse(string.rep('[', 10000))",
        &["kumo.serde.yaml_parse: invalid YAML"],
    );
    assert_error(
        "kumo.serde.toml_parse('a = ' .. string.rep('[', 10000))",
        &["kumo.serde.toml_parse: invalid TOML"],
    );
}

/// A YAML alias bomb stops at the parser's repetition limit.
#[test]
fn yaml_alias_expansion_is_bounded() {
    let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = (b'a' + level - 1) as char;
        let name = (b'a' + level) as char;
        doc.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    assert_error(
        &format!("kumo.serde.yaml_parse [[\n{doc}]]"),
        &["kumo.serde.yaml_parse: invalid YAML"],
    );
}

#[test]
fn oversize_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    let file = std::fs::File::create(&path).unwrap();
    // Sparse: costs no disk.
    file.set_len(super::MAX_FILE_BYTES + 1).unwrap();
    assert_error(
        &format!("kumo.serde.json_load({:?})", path.display().to_string()),
        &["kumo.serde.json_load: ", "is larger than 67108864 bytes"],
    );
}
