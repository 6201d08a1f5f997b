//! `require 'sqlite'`: `sqlite.open(PATH, [BUSY_TIMEOUT_MS])`,
//! `db:execute(SQL, ...)` and `db:close()`, as KumoMTA documents them.
//! Queries are blocking SQLite calls, so they run on tokio's blocking pool
//! (`spawn_blocking`) while the Lua call awaits them; opening only opens
//! the file and is synchronous, as in KumoMTA.

use crate::lua_errors::{lua_err, require_runtime};
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};
use parking_lot::Mutex;
use policy::get_or_create_module;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Duration;

/// `BUSY_TIMEOUT` when `sqlite.open` is given none, in milliseconds.
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 500;

/// The most rows one `execute` returns; a larger result is an error rather
/// than an unbounded table in every Lua state that asks.
pub const MAX_RESULT_ROWS: usize = 100_000;

/// Parameters of one query, already detached from Lua.
#[derive(Debug, PartialEq)]
enum Params {
    /// `?` / `?N` parameters, in order.
    Positional(Vec<SqlValue>),
    /// `:name` (or `@name`, `$name`) parameters.
    Named(Vec<(String, SqlValue)>),
}

/// What a statement produced.
#[derive(Debug, PartialEq)]
enum QueryOutput {
    /// A statement with result columns (a `SELECT`, `... RETURNING`).
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<SqlValue>>,
    },
    /// A statement without result columns: the rows it changed.
    Changed(usize),
}

/// A connection handle (`sqlite.open`'s result). `close` drops the
/// connection; the handle then refuses queries.
#[derive(Clone)]
struct SqliteDb {
    conn: Arc<Mutex<Option<Connection>>>,
}

impl SqliteDb {
    /// Open (or create) the file. Synchronous, as in KumoMTA, so it also
    /// works at a policy's top level: SQLite only opens the file here and
    /// reads it at the first query.
    fn open(path: &str, busy_timeout: Duration) -> mlua::Result<Self> {
        let failed = |err: rusqlite::Error| lua_err("sqlite: open", format!("{path}: {err}"));
        let conn = Connection::open(path).map_err(failed)?;
        conn.busy_timeout(busy_timeout).map_err(failed)?;
        Ok(SqliteDb {
            conn: Arc::new(Mutex::new(Some(conn))),
        })
    }

    async fn execute(&self, sql: String, params: Params) -> mlua::Result<QueryOutput> {
        let conn = self.conn.clone();
        blocking("sqlite: execute", move || match conn.lock().as_ref() {
            Some(conn) => run_statement(conn, &sql, &params),
            None => Err("the connection is closed".into()),
        })
        .await
    }
}

/// Run `work` on the blocking pool; its error becomes a Lua error named
/// `function`.
async fn blocking<T: Send + 'static>(
    function: &'static str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> mlua::Result<T> {
    require_runtime(function)?;
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|err| lua_err(function, err)),
        Err(err) => Err(lua_err(function, format!("the SQLite task failed: {err}"))),
    }
}

/// Prepare (from the connection's statement cache), bind and run `sql`.
/// Errors name what failed but never a parameter's value (it may be a
/// password).
fn run_statement(conn: &Connection, sql: &str, params: &Params) -> Result<QueryOutput, String> {
    let mut stmt = conn.prepare_cached(sql).map_err(|err| err.to_string())?;
    match params {
        Params::Positional(values) => {
            let expected = stmt.parameter_count();
            if values.len() != expected {
                return Err(format!(
                    "the query has {expected} parameter(s), {} given",
                    values.len()
                ));
            }
            for (index, value) in values.iter().enumerate() {
                stmt.raw_bind_parameter(index + 1, value)
                    .map_err(|err| format!("binding parameter {}: {err}", index + 1))?;
            }
        }
        Params::Named(values) => {
            for (name, value) in values {
                let index = stmt
                    .parameter_index(name)
                    .map_err(|err| err.to_string())?
                    .ok_or_else(|| format!("the query has no parameter {name}"))?;
                stmt.raw_bind_parameter(index, value)
                    .map_err(|err| format!("binding parameter {name}: {err}"))?;
            }
        }
    }
    let width = stmt.column_count();
    if width == 0 {
        return stmt
            .raw_execute()
            .map(QueryOutput::Changed)
            .map_err(|err| err.to_string());
    }
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    let mut rows = Vec::new();
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next().map_err(|err| err.to_string())? {
        if rows.len() == MAX_RESULT_ROWS {
            return Err(format!("the result has more than {MAX_RESULT_ROWS} rows"));
        }
        let values = (0..width)
            .map(|index| row.get::<_, SqlValue>(index))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| err.to_string())?;
        rows.push(values);
    }
    Ok(QueryOutput::Rows { columns, rows })
}

/// The query parameters `db:execute(sql, ...)` was given: several values
/// are positional; a single table is positional when it is a sequence and
/// named (`{ name = 'fred' }` binds `:name`) otherwise.
fn params_from_lua(args: MultiValue) -> Result<Params, String> {
    let mut args: Vec<Value> = args.into_iter().collect();
    if args.len() == 1 {
        if let Value::Table(table) = &args[0] {
            return params_from_table(table);
        }
    }
    let values = args
        .drain(..)
        .enumerate()
        .map(|(index, value)| sql_value(&value, &format!("parameter {}", index + 1)))
        .collect::<Result<_, _>>()?;
    Ok(Params::Positional(values))
}

fn params_from_table(table: &Table) -> Result<Params, String> {
    let mut positional = Vec::new();
    let mut named = Vec::new();
    for pair in table.clone().pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|err| err.to_string())?;
        match key {
            Value::Integer(index) if index >= 1 => positional.push((index, value)),
            Value::String(name) => {
                let name = name.to_str().map_err(|_| "a parameter name is not UTF-8")?;
                let name = if name.starts_with([':', '@', '$']) {
                    name.to_string()
                } else {
                    format!(":{name}")
                };
                let value = sql_value(&value, &format!("parameter {name}"))?;
                named.push((name, value));
            }
            other => {
                return Err(format!(
                    "parameter keys must be names or positions 1..n, got a {}",
                    other.type_name()
                ))
            }
        }
    }
    if !positional.is_empty() && !named.is_empty() {
        return Err("parameters are either all named or all positional".into());
    }
    if named.is_empty() {
        positional.sort_by_key(|(index, _)| *index);
        let values = positional
            .iter()
            .enumerate()
            .map(|(at, (index, value))| {
                if *index != at as i64 + 1 {
                    return Err(format!("parameter {} is missing", at + 1));
                }
                sql_value(value, &format!("parameter {index}"))
            })
            .collect::<Result<_, _>>()?;
        return Ok(Params::Positional(values));
    }
    Ok(Params::Named(named))
}

/// One Lua value as an SQLite value. UTF-8 strings bind as TEXT, other
/// byte strings as BLOB, booleans as 1/0.
fn sql_value(value: &Value, what: &str) -> Result<SqlValue, String> {
    Ok(match value {
        Value::Nil => SqlValue::Null,
        Value::LightUserData(ud) if ud.0.is_null() => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Number(n) => SqlValue::Real(*n),
        Value::String(s) => match s.to_str() {
            Ok(text) => SqlValue::Text(text.to_string()),
            Err(_) => SqlValue::Blob(s.as_bytes().to_vec()),
        },
        other => {
            return Err(format!(
                "{what}: a {} cannot be bound (strings, numbers, booleans and nil can)",
                other.type_name()
            ))
        }
    })
}

/// The Lua shape KumoMTA documents: one column gives a list of values,
/// several give a list of `{ column = value }` tables, a statement without
/// result columns gives the number of rows it changed.
fn output_to_lua(lua: &Lua, output: QueryOutput) -> mlua::Result<Value> {
    let (columns, rows) = match output {
        QueryOutput::Changed(count) => return Ok(Value::Integer(count as i64)),
        QueryOutput::Rows { columns, rows } => (columns, rows),
    };
    let list = lua.create_table_with_capacity(rows.len(), 0)?;
    for (index, row) in rows.into_iter().enumerate() {
        let item = if columns.len() == 1 {
            let value = row.into_iter().next().unwrap_or(SqlValue::Null);
            value_to_lua(lua, value)?
        } else {
            let record = lua.create_table_with_capacity(0, columns.len())?;
            for (name, value) in columns.iter().zip(row) {
                record.raw_set(name.as_str(), value_to_lua(lua, value)?)?;
            }
            Value::Table(record)
        };
        // raw_set by index keeps NULLs as holes, as KumoMTA does.
        list.raw_set(index + 1, item)?;
    }
    Ok(Value::Table(list))
}

fn value_to_lua(lua: &Lua, value: SqlValue) -> mlua::Result<Value> {
    Ok(match value {
        SqlValue::Null => Value::Nil,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(n) => Value::Number(n),
        SqlValue::Text(text) => Value::String(lua.create_string(text)?),
        SqlValue::Blob(bytes) => Value::String(lua.create_string(bytes)?),
    })
}

impl UserData for SqliteDb {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("execute", |lua, this, (sql, args): (Value, MultiValue)| {
            // Not borrowed while the query runs (other coroutines may
            // use the handle meanwhile).
            let this = this.clone();
            async move {
                let Value::String(sql) = sql else {
                    return Err(lua_err(
                        "sqlite: execute",
                        format!("expected the SQL text, got {}", sql.type_name()),
                    ));
                };
                let sql = sql
                    .to_str()
                    .map_err(|_| lua_err("sqlite: execute", "the SQL text is not UTF-8"))?
                    .to_string();
                let params =
                    params_from_lua(args).map_err(|err| lua_err("sqlite: execute", err))?;
                let output = this.execute(sql, params).await?;
                output_to_lua(&lua, output)
            }
        });
        methods.add_method("close", |_, this, ()| {
            this.conn.lock().take();
            Ok(())
        });
    }
}

/// Install `require 'sqlite'`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = get_or_create_module(lua, "sqlite")?;
    let open = lua.create_function(|_, (path, busy_timeout): (Value, Value)| {
        let path = match path {
            Value::String(path) => path
                .to_str()
                .map_err(|_| lua_err("sqlite: open", "the path is not UTF-8"))?
                .to_string(),
            other => {
                return Err(lua_err(
                    "sqlite: open",
                    format!("expected a path, got {}", other.type_name()),
                ))
            }
        };
        let busy_ms = match busy_timeout {
            Value::Nil => DEFAULT_BUSY_TIMEOUT_MS,
            Value::Integer(ms) if ms >= 0 => ms as u64,
            Value::Number(ms) if ms >= 0.0 && ms.fract() == 0.0 => ms as u64,
            other => {
                return Err(lua_err(
                    "sqlite: open",
                    format!(
                        "BUSY_TIMEOUT must be a whole number of milliseconds >= 0, got {}",
                        match other {
                            Value::Integer(_) | Value::Number(_) => format!("{other:?}"),
                            _ => other.type_name().to_string(),
                        }
                    ),
                ))
            }
        };
        SqliteDb::open(&path, Duration::from_millis(busy_ms))
    })?;
    module.set("open", open)
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
