//! The values `kumo.memoize` keeps: a `Send` copy of Lua values that any
//! Lua state of the process can rebuild, and the canonical encoding of a
//! call's arguments that (salted and hashed) keys the cache.

use mlua::{LightUserData, Lua, Value};

/// How deep tables may nest, in arguments and in results. It is also what
/// stops a table that contains itself.
pub(crate) const MAX_TABLE_DEPTH: usize = 32;

/// A Lua value detached from its state. Tables lose their metatables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CachedValue {
    Nil,
    /// mlua's `null` (a null light userdata: JSON `null` from the serde
    /// bridge).
    Null,
    Boolean(bool),
    Integer(i64),
    Number(f64),
    /// Lua strings are bytes, not necessarily UTF-8.
    String(Vec<u8>),
    /// Key/value pairs in iteration order.
    Table(Vec<(CachedValue, CachedValue)>),
}

impl CachedValue {
    /// Copy `value`; functions, userdata and threads cannot be copied out of
    /// their state and are refused with a message naming the type.
    pub(crate) fn from_lua(value: &Value) -> Result<Self, String> {
        Self::from_lua_at(value, 0)
    }

    fn from_lua_at(value: &Value, depth: usize) -> Result<Self, String> {
        Ok(match value {
            Value::Nil => CachedValue::Nil,
            Value::Boolean(b) => CachedValue::Boolean(*b),
            Value::Integer(i) => CachedValue::Integer(*i),
            Value::Number(n) => CachedValue::Number(*n),
            Value::String(s) => CachedValue::String(s.as_bytes().to_vec()),
            Value::LightUserData(ud) if ud.0.is_null() => CachedValue::Null,
            Value::Table(table) => {
                if depth >= MAX_TABLE_DEPTH {
                    return Err(format!(
                        "tables nest deeper than {MAX_TABLE_DEPTH} levels (or contain themselves)"
                    ));
                }
                let mut pairs = Vec::new();
                for pair in table.pairs::<Value, Value>() {
                    let (key, value) = pair.map_err(|err| err.to_string())?;
                    pairs.push((
                        Self::from_lua_at(&key, depth + 1)?,
                        Self::from_lua_at(&value, depth + 1)?,
                    ));
                }
                CachedValue::Table(pairs)
            }
            other => return Err(format!("a {} value cannot be cached", other.type_name())),
        })
    }

    /// Rebuild the value in `lua`.
    pub(crate) fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            CachedValue::Nil => Value::Nil,
            CachedValue::Null => Value::LightUserData(LightUserData(std::ptr::null_mut())),
            CachedValue::Boolean(b) => Value::Boolean(*b),
            CachedValue::Integer(i) => Value::Integer(*i),
            CachedValue::Number(n) => Value::Number(*n),
            CachedValue::String(bytes) => Value::String(lua.create_string(bytes)?),
            CachedValue::Table(pairs) => {
                let table = lua.create_table_with_capacity(0, pairs.len())?;
                for (key, value) in pairs {
                    table.raw_set(key.to_lua(lua)?, value.to_lua(lua)?)?;
                }
                Value::Table(table)
            }
        })
    }

    /// Append a canonical, self-delimiting encoding: equal Lua values give
    /// equal bytes whatever the table iteration order, and `1` and `1.0`
    /// (equal in Lua) encode alike.
    pub(crate) fn encode_key(&self, out: &mut Vec<u8>) {
        match self {
            CachedValue::Nil => out.push(b'n'),
            CachedValue::Null => out.push(b'N'),
            CachedValue::Boolean(b) => out.push(if *b { b't' } else { b'f' }),
            CachedValue::Integer(i) => {
                out.push(b'i');
                out.extend_from_slice(&i.to_le_bytes());
            }
            CachedValue::Number(n) => match integral(*n) {
                Some(i) => CachedValue::Integer(i).encode_key(out),
                None => {
                    out.push(b'd');
                    out.extend_from_slice(&n.to_bits().to_le_bytes());
                }
            },
            CachedValue::String(bytes) => {
                out.push(b's');
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            CachedValue::Table(pairs) => {
                let mut encoded: Vec<(Vec<u8>, Vec<u8>)> = pairs
                    .iter()
                    .map(|(key, value)| {
                        let (mut k, mut v) = (Vec::new(), Vec::new());
                        key.encode_key(&mut k);
                        value.encode_key(&mut v);
                        (k, v)
                    })
                    .collect();
                encoded.sort();
                out.push(b'{');
                out.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
                for (key, value) in encoded {
                    out.extend_from_slice(&key);
                    out.extend_from_slice(&value);
                }
            }
        }
    }
}

/// `n` as an integer when Lua would compare it equal to one.
fn integral(n: f64) -> Option<i64> {
    // -2^63 and 2^63 bound the i64 range exactly as floats.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (n.fract() == 0.0 && (-LIMIT..LIMIT).contains(&n)).then_some(n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(lua: &Lua, code: &str) -> Vec<u8> {
        let value: Value = lua.load(code).eval().unwrap();
        let mut out = Vec::new();
        CachedValue::from_lua(&value).unwrap().encode_key(&mut out);
        out
    }

    #[test]
    fn equal_lua_values_encode_alike() {
        let lua = Lua::new();
        assert_eq!(encoded(&lua, "1"), encoded(&lua, "1.0"));
        assert_ne!(encoded(&lua, "1"), encoded(&lua, "1.5"));
        assert_ne!(encoded(&lua, "'1'"), encoded(&lua, "1"));
        // Same pairs, different insertion order (and so iteration order).
        let a = encoded(&lua, "local t = {} t.a = 1 t.b = 2 t.c = {3, 4} return t");
        let b = encoded(&lua, "local t = {} t.c = {3, 4} t.b = 2 t.a = 1 return t");
        assert_eq!(a, b);
        assert_ne!(a, encoded(&lua, "return { a = 1, b = 2, c = { 4, 3 } }"));
    }

    #[test]
    fn values_round_trip_between_states() {
        let (from, to) = (Lua::new(), Lua::new());
        let value: Value = from
            .load("return { name = 'x', n = 3, f = 1.5, ok = true, nested = { 'a', { b = '\\0\\255' } } }")
            .eval()
            .unwrap();
        let cached = CachedValue::from_lua(&value).unwrap();
        let rebuilt = cached.to_lua(&to).unwrap();
        to.globals().set("v", rebuilt).unwrap();
        let check: bool = to
            .load(
                "return v.name == 'x' and math.type(v.n) == 'integer' and v.f == 1.5 and v.ok \
                 and v.nested[1] == 'a' and v.nested[2].b == '\\0\\255'",
            )
            .eval()
            .unwrap();
        assert!(check);
    }

    #[test]
    fn functions_and_cycles_are_refused() {
        let lua = Lua::new();
        let function: Value = lua.load("return print").eval().unwrap();
        let err = CachedValue::from_lua(&function).unwrap_err();
        assert_eq!(err, "a function value cannot be cached");
        let cycle: Value = lua.load("local t = {} t.self = t return t").eval().unwrap();
        let err = CachedValue::from_lua(&cycle).unwrap_err();
        assert!(err.contains("contain themselves"), "{err}");
    }
}
