use crate::test_support::{assert_error, run};
use crate::{LogFilterSetter, PolicyLibrary};
use parking_lot::Mutex;
use std::sync::Arc;

/// Collects formatted log output for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `code` with an `info`-level subscriber and return what it logged.
fn logged(code: &str) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || run(&crate::test_support::lua(), code));
    let bytes = captured.0.lock().clone();
    String::from_utf8(bytes).unwrap()
}

/// The example of upstream's `log_*` pages, unchanged.
#[test]
fn upstream_examples() {
    let out = logged(
        r#"
-- I am a file named unix.lua
-- The next line is line number 3
kumo.log_error('Logging something', true, false, 42, { 1, 2, 3 })
kumo.log_debug('Logging something', true, false, 42, { 1, 2, 3 })
"#,
    );
    assert!(
        out.contains("ERROR lua: test.lua:4: Logging something true false 42 table: 0x"),
        "{out}"
    );
    assert!(!out.contains("DEBUG"), "debug is below the filter: {out}");
}

#[test]
fn levels_and_argument_formatting() {
    let out = logged(
        "kumo.log_warn('w', nil, 1.5) kumo.log_info('i', '\\xff\\xfeok', kumo.uuid.parse('69994630-3e27-11ef-91fc-cc28aa0a5c5a'))",
    );
    assert!(out.contains(" WARN lua: test.lua:1: w nil 1.5"), "{out}");
    assert!(
        out.contains(" INFO lua: test.lua:1: i \\xFF\\xFEok 69994630-3e27-11ef-91fc-cc28aa0a5c5a"),
        "{out}"
    );
}

#[test]
fn set_diagnostic_log_filter_calls_the_binary_setter() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let setter: LogFilterSetter = Arc::new(move |filter: &str| {
        if filter.contains('!') {
            anyhow::bail!("does not parse");
        }
        record.lock().push(filter.to_owned());
        Ok(())
    });
    let lua = mlua::Lua::new();
    crate::register(&lua, &PolicyLibrary::with_log_filter(setter)).unwrap();
    run(&lua, "kumo.set_diagnostic_log_filter 'info,lua=debug'");
    assert_eq!(*seen.lock(), vec!["info,lua=debug".to_owned()]);
    // upstream's example, unchanged, registers an init handler that calls it.
    run(
        &lua,
        "kumo.on = function(event, handler) handler() end\n\
         kumo.on('init', function()\n  kumo.set_diagnostic_log_filter 'kumod=debug'\nend)",
    );
    assert_eq!(seen.lock().last().map(String::as_str), Some("kumod=debug"));
    let err = lua
        .load("kumo.set_diagnostic_log_filter 'bad!'")
        .exec()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kumo.set_diagnostic_log_filter: invalid filter \"bad!\": does not parse"),
        "{err}"
    );
}

#[test]
fn bad_input_is_a_named_error() {
    assert_error(
        "kumo.set_diagnostic_log_filter 'info'",
        &["kumo.set_diagnostic_log_filter: this process has no adjustable log filter"],
    );
    assert_error(
        "kumo.set_diagnostic_log_filter()",
        &["kumo.set_diagnostic_log_filter: bad argument #1"],
    );
    assert!(super::available_parallelism(Some("0".into())).is_err());
    assert!(super::available_parallelism(Some("many".into())).is_err());
}

#[test]
fn available_parallelism() {
    crate::test_support::run_fresh(
        "assert(math.type(kumo.available_parallelism()) == 'integer' and kumo.available_parallelism() >= 1)",
    );
    assert_eq!(super::available_parallelism(Some(" 3 ".into())).unwrap(), 3);
}
