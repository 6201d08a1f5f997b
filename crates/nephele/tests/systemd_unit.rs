//! `contrib/systemd/nephele.service`: hardened, accepted by
//! `systemd-analyze verify`, and its command line starts this binary with
//! the policy the README installs (`examples/nephele.lua`), which puts the
//! spool in the unit's StateDirectory and the logs in its LogsDirectory.

#[path = "../../../contrib/systemd/unit_check.rs"]
mod unit_check;

use std::path::Path;
use unit_check::{start_as_the_unit_would, ServiceUnit};

const BINARY: &str = env!("CARGO_BIN_EXE_nephele");

#[test]
fn the_unit_is_hardened_and_verified() {
    let unit = ServiceUnit::load("nephele.service");
    unit.assert_hardened();
    assert_eq!(unit.exec_start().0, "/usr/local/bin/nephele");
    assert_eq!(unit.service_value("StateDirectory"), Some("nephele"));
    assert_eq!(unit.service_value("LogsDirectory"), Some("nephele"));
    unit.verify_with_systemd(Path::new(BINARY));
}

#[test]
fn the_example_policy_under_the_unit_writes_only_where_the_unit_allows() {
    let unit = ServiceUnit::load("nephele.service");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nephele.lua");
    let dir = tempfile::tempdir().expect("temp dir");
    // What systemd creates and passes for StateDirectory and LogsDirectory.
    let state = dir.path().join("var-lib-nephele");
    let logs = dir.path().join("var-log-nephele");
    std::fs::create_dir(&state).unwrap();
    std::fs::create_dir(&logs).unwrap();
    start_as_the_unit_would(
        &unit,
        Path::new(BINARY),
        "/etc/nephele/policy.lua",
        &example,
        &[
            ("STATE_DIRECTORY", state.clone()),
            ("LOGS_DIRECTORY", logs.clone()),
            // Not the example's 8000: a free port.
            ("NEPHELE_LISTEN", "127.0.0.1:0".into()),
        ],
        "http listener on 127.0.0.1:",
        || {
            for spool in ["spool/data", "spool/meta"] {
                let path = state.join(spool);
                let files = std::fs::read_dir(&path)
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
                    .count();
                assert!(files > 0, "{} holds the spool file", path.display());
            }
        },
    );
    let mut top: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["var-lib-nephele", "var-log-nephele"],
        "nothing else written"
    );
}
