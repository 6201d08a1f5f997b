//! `require 'sqlite'` against real SQLite files made by the tests.

use crate::PolicyLibrary;
use mlua::Lua;
use std::time::{Duration, Instant};

/// A Lua state with the library and `print` captured into the global
/// table `printed` (one string per call, arguments joined by tabs).
fn state() -> Lua {
    let lua = Lua::new();
    crate::register(&lua, &PolicyLibrary::new()).unwrap();
    lua.load(
        "printed = {}
         function print(...)
           local parts = {}
           for i = 1, select('#', ...) do parts[i] = tostring(select(i, ...)) end
           table.insert(printed, table.concat(parts, '\\t'))
         end",
    )
    .exec()
    .unwrap();
    lua
}

async fn run(lua: &Lua, code: &str) -> mlua::Result<()> {
    lua.load(code).exec_async().await
}

fn printed(lua: &Lua) -> Vec<String> {
    lua.globals().get("printed").unwrap()
}

#[path = "../tests/support/upstream_examples.rs"]
mod upstream_examples;

#[tokio::test]
async fn the_upstream_example_runs_unchanged() {
    let lua = state();
    run(&lua, upstream_examples::SQLITE).await.unwrap();
    let mut lines = printed(&lua);
    // `pairs` order within a row is unspecified: sort each row's fields.
    lines[5..7].sort();
    lines[8..10].sort();
    assert_eq!(
        lines,
        [
            "query ages",
            "1\t32",
            "2\t42",
            "query all",
            "row\t1",
            "age\t32",
            "name\tfred",
            "row\t2",
            "age\t42",
            "name\tjohn",
            "deleted rows:\t2",
        ]
    );
}

#[tokio::test]
async fn a_file_database_gives_values_nulls_blobs_and_change_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.db");
    let setup = rusqlite::Connection::open(&path).unwrap();
    setup
        .execute_batch(
            "CREATE TABLE auth (user TEXT, pass TEXT, quota INTEGER, ratio REAL, key BLOB);
             INSERT INTO auth VALUES ('daniel', 'tiger', 10, 0.5, x'00ff');
             INSERT INTO auth VALUES ('erin', 'lion', NULL, NULL, NULL);",
        )
        .unwrap();
    let lua = state();
    lua.globals().set("path", path.to_str().unwrap()).unwrap();
    run(
        &lua,
        r#"
        local sqlite = require 'sqlite'
        local db = sqlite.open(path, 1000)
        local users = db:execute('select user from auth order by user')
        assert(#users == 2 and users[1] == 'daniel' and users[2] == 'erin')
        local match = db:execute('select user from auth where user = ? and pass = ?', 'daniel', 'tiger')
        assert(match[1] == 'daniel')
        local none = db:execute('select user from auth where user = ? and pass = ?', 'daniel', 'bad')
        assert(type(none) == 'table' and #none == 0 and none[1] == nil)
        local rows = db:execute('select * from auth where user = :user', { user = 'daniel' })
        local r = rows[1]
        assert(r.quota == 10 and math.type(r.quota) == 'integer' and r.ratio == 0.5)
        assert(r.key == '\0\255')
        local erin = db:execute('select * from auth where user = $u', { ['$u'] = 'erin' })[1]
        assert(erin.user == 'erin' and erin.quota == nil)
        local listed = db:execute('select quota from auth where user = ?', { 'erin' })
        assert(#listed == 0 or listed[1] == nil)
        assert(db:execute('update auth set quota = ? where quota is null', 7) == 1)
        assert(db:execute('update auth set quota = 1 where user = ?', 'nobody') == 0)
        db:close()
        local ok, err = pcall(db.execute, db, 'select 1')
        assert(not ok and tostring(err):find('sqlite: execute: the connection is closed', 1, true), err)
        "#,
    )
    .await
    .unwrap();
    let quota: i64 = setup
        .query_row("select quota from auth where user = 'erin'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(quota, 7, "the update reached the file");
}

#[tokio::test]
async fn bad_input_is_a_lua_error_naming_the_function_without_parameter_values() {
    let lua = state();
    run(
        &lua,
        "db = require('sqlite').open(':memory:') db:execute('create table t (a, b)')",
    )
    .await
    .unwrap();
    let cases = [
        ("db:execute('selec * from t')", "sqlite: execute: near \"selec\": syntax error"),
        (
            "db:execute('select * from missing where b = ?', 'hunter2')",
            "sqlite: execute: no such table: missing",
        ),
        (
            "db:execute('select * from t where a = ? and b = ?', 'hunter2')",
            "sqlite: execute: the query has 2 parameter(s), 1 given",
        ),
        (
            "db:execute('select * from t where a = :a', { b = 'hunter2' })",
            "sqlite: execute: the query has no parameter :b",
        ),
        (
            "db:execute('select * from t where a = ?', 'x', { 'hunter2' })",
            "sqlite: execute: parameter 2: a table cannot be bound",
        ),
        (
            "db:execute('select * from t where a = ?', { 1, a = 'hunter2' })",
            "sqlite: execute: parameters are either all named or all positional",
        ),
        ("db:execute(42)", "sqlite: execute: expected the SQL text, got integer"),
        (
            "require('sqlite').open({})",
            "sqlite: open: expected a path, got table",
        ),
        (
            "require('sqlite').open(':memory:', -5)",
            "sqlite: open: BUSY_TIMEOUT must be a whole number of milliseconds >= 0, got Integer(-5)",
        ),
        (
            "require('sqlite').open('/nonexistent-dir/x/auth.db')",
            "sqlite: open: /nonexistent-dir/x/auth.db: unable to open database file",
        ),
    ];
    for (code, expected) in cases {
        let err = run(&lua, code).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{code}: {err}");
        assert!(!err.contains("hunter2"), "{code} leaked a value: {err}");
    }
}

#[tokio::test]
async fn results_are_bounded() {
    let lua = state();
    let err = run(
        &lua,
        "require('sqlite').open(':memory:'):execute(
           'with recursive n(i) as (select 1 union all select i + 1 from n) select i from n')",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("sqlite: execute: the result has more than 100000 rows"),
        "{err}"
    );
}

/// A query waiting for a lock must not hold the async runtime: on a
/// current-thread runtime, the task that releases the lock can only run if
/// the query waits on the blocking pool.
#[tokio::test(flavor = "current_thread")]
async fn a_query_waits_off_the_runtime_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder
        .execute_batch("CREATE TABLE t (a); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .unwrap();
    let lua = state();
    lua.globals().set("path", path.to_str().unwrap()).unwrap();
    let started = Instant::now();
    let query = run(
        &lua,
        "result = require('sqlite').open(path, 20000):execute('insert into t values (2)')",
    );
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.execute_batch("COMMIT").unwrap();
    };
    let (outcome, ()) = tokio::join!(query, release);
    outcome.unwrap();
    assert_eq!(lua.globals().get::<i64>("result").unwrap(), 1);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn open_works_at_a_policy_top_level() {
    // A policy's top level runs synchronously, outside any coroutine.
    let lua = state();
    lua.load("db = require('sqlite').open(':memory:')")
        .exec()
        .unwrap();
    // A query waits, so it needs the runtime: an error, not a panic.
    let err = lua.load("db:execute('select 1')").exec().unwrap_err();
    assert!(
        err.to_string()
            .contains("sqlite: execute: needs the async runtime"),
        "{err}"
    );
}
