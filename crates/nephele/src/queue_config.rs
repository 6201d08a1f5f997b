//! `kumo.make_queue_config { ... }`: how a queue delivers and retries.

use mlua::{FromLua, Lua, UserData, Value};
use policy::{deserialize_duration, deserialize_optional_duration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// A queue's configuration, as `get_queue_config` returns it. Unknown keys
/// are an error naming the key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Where messages go: a Maildir, or SMTP. Absent: SMTP to the domain's
    /// MX records.
    #[serde(default)]
    pub protocol: Option<DeliveryProtocol>,

    /// Wait after the first failed attempt; doubles after each further one.
    #[serde(
        default = "default_retry_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub retry_interval: Duration,

    /// Upper bound of the doubling wait; unbounded when absent.
    #[serde(default, deserialize_with = "deserialize_optional_duration")]
    pub max_retry_interval: Option<Duration>,

    /// How long after reception a message is given up (`Expiration`).
    #[serde(default = "default_max_age", deserialize_with = "deserialize_duration")]
    pub max_age: Duration,

    /// The egress pool SMTP delivery would use (not used by Maildir).
    #[serde(default)]
    pub egress_pool: Option<String>,
}

/// `protocol = { maildir_path = '...' }` or `protocol = { smtp = { ... } }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum DeliveryProtocol {
    /// Deliver into the Maildir at this directory (created with its `new`,
    /// `cur`, `tmp` as needed; while that fails, attempts fail transiently).
    MaildirPath(PathBuf),
    /// SMTP to `mx_list`, or to the domain's MX hosts (see [`crate::smtp`]).
    Smtp(SmtpProtocol),
}

/// `protocol = { smtp = { mx_list = { 'host:port', ... } } }`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpProtocol {
    /// Hosts to use instead of the domain's MX records.
    #[serde(default)]
    pub mx_list: Vec<String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            protocol: None,
            retry_interval: default_retry_interval(),
            max_retry_interval: None,
            max_age: default_max_age(),
            egress_pool: None,
        }
    }
}

impl QueueConfig {
    /// The wait before attempt `attempts + 1`, given `attempts` failed ones:
    /// `retry_interval * 2^(attempts-1)`, capped by `max_retry_interval`.
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        let delay = self.retry_interval.saturating_mul(factor);
        match self.max_retry_interval {
            Some(max) => delay.min(max),
            None => delay,
        }
    }

    /// Checks serde cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.retry_interval.is_zero() {
            anyhow::bail!("retry_interval must be greater than zero");
        }
        if let Some(DeliveryProtocol::MaildirPath(path)) = &self.protocol {
            if path.as_os_str().is_empty() {
                anyhow::bail!("protocol.maildir_path must not be empty");
            }
        }
        Ok(())
    }
}

fn default_retry_interval() -> Duration {
    Duration::from_secs(20 * 60)
}
fn default_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// What `kumo.make_queue_config` returns to Lua: an opaque, validated value.
#[derive(Debug, Clone)]
pub struct LuaQueueConfig(pub QueueConfig);

impl UserData for LuaQueueConfig {}

impl FromLua for LuaQueueConfig {
    /// The value of `kumo.make_queue_config`, or a plain table (parsed the
    /// same way).
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        match value {
            Value::UserData(data) => Ok(data.borrow::<LuaQueueConfig>()?.clone()),
            Value::Table(_) => parse(lua, value).map(LuaQueueConfig),
            other => Err(mlua::Error::RuntimeError(format!(
                "get_queue_config must return kumo.make_queue_config {{...}}, got {}",
                other.type_name()
            ))),
        }
    }
}

/// Parse and validate a Lua table.
pub fn parse(lua: &Lua, value: Value) -> mlua::Result<QueueConfig> {
    let config: QueueConfig = policy::from_lua_params(lua, value)
        .map_err(|err| mlua::Error::RuntimeError(format!("make_queue_config: {err}")))?;
    config
        .validate()
        .map_err(|err| mlua::Error::RuntimeError(format!("make_queue_config: {err:#}")))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(json: &str) -> Result<QueueConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn parses_the_spec_forms() {
        let maildir = parse_json(
            r#"{"protocol":{"maildir_path":"/tmp/md"},"retry_interval":"1s","max_age":"1 minute"}"#,
        )
        .unwrap();
        assert_eq!(
            maildir.protocol,
            Some(DeliveryProtocol::MaildirPath("/tmp/md".into()))
        );
        assert_eq!(maildir.retry_interval, Duration::from_secs(1));
        assert_eq!(maildir.max_age, Duration::from_secs(60));
        let smtp = parse_json(
            r#"{"protocol":{"smtp":{"mx_list":["127.0.0.1:2525"]}},"egress_pool":"p","max_retry_interval":"1h"}"#,
        )
        .unwrap();
        assert!(matches!(smtp.protocol, Some(DeliveryProtocol::Smtp(_))));
        let default = parse_json("{}").unwrap();
        assert_eq!(default, QueueConfig::default());
        assert_eq!(default.retry_interval, Duration::from_secs(1200));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_json(r#"{"retry":"1s"}"#).unwrap_err().to_string();
        assert!(err.contains("retry"), "{err}");
        let err = parse_json(r#"{"protocol":{"maildir":"/x"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("maildir"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut config = QueueConfig {
            retry_interval: Duration::from_secs(10),
            ..QueueConfig::default()
        };
        assert_eq!(config.delay_after(1), Duration::from_secs(10));
        assert_eq!(config.delay_after(2), Duration::from_secs(20));
        assert_eq!(config.delay_after(4), Duration::from_secs(80));
        config.max_retry_interval = Some(Duration::from_secs(30));
        assert_eq!(config.delay_after(4), Duration::from_secs(30));
        assert!(config.delay_after(1000) <= Duration::from_secs(30));
    }
}
