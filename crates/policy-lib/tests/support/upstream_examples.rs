//! KumoMTA's reference examples for the policy library, word for word.
//! The library's tests run each one and check what it printed; the proxy's
//! black-box test runs them inside a real login handler. Only the server
//! addresses are replaced (see [`with_addresses`]).

#![allow(dead_code)]

/// `sqlite.open`'s page.
pub const SQLITE: &str = r#"
local sqlite = require 'sqlite'
local db = sqlite.open ':memory:'

-- For the sake of this example, populate with some simple data
db:execute 'CREATE TABLE people (name, age)'

-- You can use prepared statements with positional arguments like this:
db:execute('INSERT INTO people (name, age) values (?, ?)', 'john', 42)

-- and with named arguments like this:
db:execute(
  'INSERT INTO people (name, age) values (:name, :age)',
  { name = 'fred', age = 32 }
)

-- Lets print out just the ages from the database; when the query
-- returns only a single column, the returned value will be an
-- array style lua table consisting of just the values.  In this case,
-- it is equivalent to `{32, 42}`
print 'query ages'
local ages = db:execute 'select age from people order by age'
for k, v in ipairs(ages) do
  print(k, v)
end

-- When multiple columns are returned, they are presented as
-- an array style table of lua object style tables will be returned.
-- In this case it is equivalent to:
-- `{ {name="john", age=42 }, {name="fred", age=32}}`
print 'query all'
local ages = db:execute 'select * from people order by age'
for k, v in ipairs(ages) do
  print('row', k)
  for name, value in pairs(v) do
    print(name, value)
  end
end

-- When no rows are returned by the query, the return value is
-- the number of rows affected by the query. In this case, because
-- 2 records are being deleted, this will print 2
print('deleted rows:', db:execute 'delete from people')
"#;

/// `redis.open`'s page, plus its `INCRBY` line.
pub const REDIS: &str = r#"
local redis = require 'redis'

-- Open a connection and increment a counter, returning its new value.
-- Redis URL syntax is: 'redis://[<username>][:<password>@]<hostname>[:port][/[<db>][?protocol=<protocol>]]'
local conn = redis.open { node = 'redis://127.0.0.1/' }
print(conn:query('incr', 'test-count'))
print(conn:query("INCRBY", "my-key", 2))
"#;

/// `kumo.http.build_client`'s page.
pub const HTTP_CLIENT: &str = r#"
local response = kumo.http.build_client({}):get('https://example.com/'):send()
print(response:status_code(), response:status_reason())
for k, v in pairs(response:headers()) do
  print('Header', k, v)
end
print(response:text())
"#;

/// `kumo.http.build_url`'s page.
pub const HTTP_BUILD_URL: &str = r#"
local url = kumo.http.build_url('https://example.com/?existing=value', {
  a = 1,
  b = 2,
})
assert(url == 'https://example.com/?existing=value&a=1&b=2')
"#;

/// `example` with the examples' server addresses replaced by the test's:
/// `redis` for `redis://127.0.0.1/`, `http` for `https://example.com/` in
/// the client example (`build_url` keeps its own, it makes no request).
pub fn with_addresses(example: &str, redis: &str, http: &str) -> String {
    example
        .replace("redis://127.0.0.1/", redis)
        .replace("get('https://example.com/')", &format!("get('{http}')"))
}
