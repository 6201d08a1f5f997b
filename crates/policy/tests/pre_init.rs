//! `kumo.on('pre_init', ...)`: several handlers, all run in order by
//! `run_pre_init`, and their errors named.

use policy::{PolicyLoader, PolicyPool};
use std::time::Duration;

fn pool(code: &str) -> (tempfile::TempDir, PolicyPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.lua");
    std::fs::write(&path, code).unwrap();
    let pool = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(2)).unwrap();
    (dir, pool)
}

#[test]
fn every_pre_init_handler_runs_in_registration_order() {
    let (_dir, pool) = pool(
        "local kumo = require 'kumo'
         ran = {}
         kumo.on('pre_init', function() table.insert(ran, 'first') end)
         kumo.on('pre_init', function() table.insert(ran, 'second') end)",
    );
    let ran = pool
        .with_state(|lua| {
            policy::run_pre_init(lua)?;
            Ok(lua.globals().get::<Vec<String>>("ran")?)
        })
        .unwrap();
    assert_eq!(ran, ["first", "second"]);
}

#[test]
fn a_policy_without_pre_init_is_fine_and_errors_are_named() {
    let (_dir, quiet) = pool("local kumo = require 'kumo'");
    quiet.with_state(policy::run_pre_init).unwrap();
    let (_dir, failing) = pool(
        "local kumo = require 'kumo'
         kumo.on('pre_init', function() error('no database') end)",
    );
    let err = failing.with_state(policy::run_pre_init).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("pre_init failed") && text.contains("no database"),
        "{text}"
    );
}
