//! `contrib/systemd/proxy-server.service`: hardened, accepted by
//! `systemd-analyze verify`, and its command line starts this binary with
//! the policy the README installs (`examples/proxy.lua`).

#[path = "../../../contrib/systemd/unit_check.rs"]
mod unit_check;

use std::path::Path;
use unit_check::{start_as_the_unit_would, ServiceUnit};

const BINARY: &str = env!("CARGO_BIN_EXE_proxy-server");

#[test]
fn the_unit_is_hardened_and_verified() {
    let unit = ServiceUnit::load("proxy-server.service");
    unit.assert_hardened();
    assert_eq!(unit.exec_start().0, "/usr/local/bin/proxy-server");
    assert_eq!(unit.service_value("LogsDirectory"), Some("proxy-server"));
    unit.verify_with_systemd(Path::new(BINARY));
}

#[test]
fn the_units_command_line_runs_the_example_policy_and_stops_cleanly_on_sigterm() {
    let unit = ServiceUnit::load("proxy-server.service");
    // The README's policy, on a free port instead of 1080.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/proxy.lua");
    let text = std::fs::read_to_string(example).expect("examples/proxy.lua");
    assert!(
        text.contains("'127.0.0.1:1080'"),
        "the example's listen address moved"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.lua");
    std::fs::write(&policy, text.replace("'127.0.0.1:1080'", "'127.0.0.1:0'")).unwrap();
    let logs = dir.path().join("logs");
    start_as_the_unit_would(
        &unit,
        Path::new(BINARY),
        "/etc/proxy-server/policy.lua",
        &policy,
        // systemd passes LogsDirectory= (where an accounting log may go).
        &[("LOGS_DIRECTORY", logs)],
        "proxy listener on 127.0.0.1:",
        || {},
    );
}
