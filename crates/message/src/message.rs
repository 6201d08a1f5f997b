//! The message itself and the bytes a spool keeps for it.

use crate::address::{EnvelopeAddress, HeaderAddress};
use crate::headers::{HeaderError, Headers};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A message id: 32 lowercase hex digits, ordered by creation time (the
/// layout of a UUIDv7: 48 bits of Unix milliseconds, then random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// A new id: the time now in milliseconds, then 80 random bits. Ids
    /// made in order sort in order, so the spool's B-trees grow at their
    /// end instead of rewriting a random leaf per message. Falls back to a
    /// counter for the random part if the system has no randomness to give
    /// (ids must stay unique, not secret).
    pub fn generate() -> Self {
        Self::made_at(SystemTime::now())
    }

    fn made_at(now: SystemTime) -> Self {
        let millis = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        if getrandom::fill(&mut bytes[6..]).is_err() {
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let count = COUNTER.fetch_add(1, Ordering::Relaxed);
            bytes[8..].copy_from_slice(&count.to_be_bytes());
        }
        MessageId(data_encoding::HEXLOWER.encode(&bytes))
    }

    /// An id read back from storage.
    pub fn from_stored(text: impl Into<String>) -> Self {
        MessageId(text.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One message for one recipient: envelope, meta values (any JSON), and the
/// RFC 5322 bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    id: MessageId,
    sender: EnvelopeAddress,
    recipient: EnvelopeAddress,
    meta: Map<String, Value>,
    data: Vec<u8>,
    created: SystemTime,
}

/// What a spool keeps besides the data (the "meta" record), as JSON.
#[derive(Serialize, Deserialize)]
struct StoredMeta {
    sender: String,
    recipient: String,
    meta: Map<String, Value>,
    /// Seconds since the epoch.
    created: u64,
}

/// A stored record that cannot be turned back into a message.
#[derive(Debug, thiserror::Error)]
pub enum SpoolDecodeError {
    /// The meta record is not the JSON this crate writes.
    #[error("message {id}: unreadable meta record: {source}")]
    Meta {
        /// The message.
        id: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A stored envelope address no longer parses.
    #[error("message {id}: {source}")]
    Address {
        /// The message.
        id: String,
        /// The address error.
        source: crate::AddressError,
    },
}

impl Message {
    /// A new message with a fresh id, created now, with no meta.
    pub fn new(sender: EnvelopeAddress, recipient: EnvelopeAddress, data: Vec<u8>) -> Self {
        Message {
            id: MessageId::generate(),
            sender,
            recipient,
            meta: Map::new(),
            data,
            created: SystemTime::now(),
        }
    }

    /// The id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }
    /// The envelope sender.
    pub fn sender(&self) -> &EnvelopeAddress {
        &self.sender
    }
    /// The envelope recipient.
    pub fn recipient(&self) -> &EnvelopeAddress {
        &self.recipient
    }
    /// When the message was received (what `max_age` counts from).
    pub fn created(&self) -> SystemTime {
        self.created
    }
    /// All meta values.
    pub fn meta(&self) -> &Map<String, Value> {
        &self.meta
    }
    /// One meta value; `None` when unset.
    pub fn get_meta(&self, key: &str) -> Option<&Value> {
        self.meta.get(key)
    }
    /// One meta value as a string, when it is a string.
    pub fn get_meta_str(&self, key: &str) -> Option<&str> {
        self.meta.get(key).and_then(Value::as_str)
    }
    /// Set a meta value; `Value::Null` removes the key.
    pub fn set_meta(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if value.is_null() {
            self.meta.remove(&key);
        } else {
            self.meta.insert(key, value);
        }
    }
    /// The RFC 5322 bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Replace the bytes.
    pub fn set_data(&mut self, data: Vec<u8>) {
        self.data = data;
    }
    /// Add a header after the existing ones.
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        Headers::append(&mut self.data, name, value)
    }
    /// Add a header before the existing ones.
    pub fn prepend_header(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        Headers::prepend(&mut self.data, name, value)
    }
    /// The first header called `name`, unfolded.
    pub fn first_named_header_value(&self, name: &str) -> Option<String> {
        Headers::first_named(&self.data, name)
    }
    /// The first address of the `From:` header.
    pub fn from_header(&self) -> Option<HeaderAddress> {
        HeaderAddress::parse_first(&self.first_named_header_value("From")?)
    }
    /// The first address of the `To:` header.
    pub fn to_header(&self) -> Option<HeaderAddress> {
        HeaderAddress::parse_first(&self.first_named_header_value("To")?)
    }

    /// The meta record a spool stores next to [`Message::data`].
    pub fn encode_meta(&self) -> Vec<u8> {
        let stored = StoredMeta {
            sender: self.sender.email(),
            recipient: self.recipient.email(),
            meta: self.meta.clone(),
            created: self
                .created
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        };
        serde_json::to_vec(&stored).expect("a map of JSON values serializes")
    }

    /// Rebuild a message from what a spool returned.
    pub fn decode(id: &str, meta: &[u8], data: Vec<u8>) -> Result<Self, SpoolDecodeError> {
        let stored: StoredMeta =
            serde_json::from_slice(meta).map_err(|source| SpoolDecodeError::Meta {
                id: id.to_owned(),
                source,
            })?;
        let address = |text: &str| {
            EnvelopeAddress::parse(text).map_err(|source| SpoolDecodeError::Address {
                id: id.to_owned(),
                source,
            })
        };
        Ok(Message {
            id: MessageId::from_stored(id),
            sender: address(&stored.sender)?,
            recipient: address(&stored.recipient)?,
            meta: stored.meta,
            data,
            created: UNIX_EPOCH + Duration::from_secs(stored.created),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Message {
        Message::new(
            EnvelopeAddress::parse("from@example.com").unwrap(),
            EnvelopeAddress::parse("to@example.net").unwrap(),
            b"From: Me <from@example.com>\r\nTo: to@example.net\r\n\r\nhello\r\n".to_vec(),
        )
    }

    #[test]
    fn ids_are_unique_hex() {
        let a = MessageId::generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, MessageId::generate());
    }

    /// Ids sort by the millisecond they were made in.
    #[test]
    fn ids_made_later_sort_later() {
        let now = UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        for later in [1, 2, 1_000, 86_400_000] {
            let first = MessageId::made_at(now);
            let second = MessageId::made_at(now + Duration::from_millis(later));
            assert!(first < second, "{first} then {second}");
        }
        let stamped = u64::from_str_radix(&MessageId::made_at(now).as_str()[..12], 16).unwrap();
        assert_eq!(stamped, 1_796_000_000_123, "the first 48 bits are the time");
    }

    #[test]
    fn meta_and_headers() {
        let mut msg = sample();
        msg.set_meta("tenant", json!("t1"));
        msg.set_meta("n", json!({"a": [1, 2]}));
        assert_eq!(msg.get_meta_str("tenant"), Some("t1"));
        msg.set_meta("tenant", Value::Null);
        assert_eq!(msg.get_meta("tenant"), None);
        assert_eq!(msg.from_header().unwrap().name.as_deref(), Some("Me"));
        assert_eq!(msg.to_header().unwrap().email, "to@example.net");
    }

    #[test]
    fn spool_round_trip() {
        let mut msg = sample();
        msg.set_meta("http_auth", json!("scott"));
        let meta = msg.encode_meta();
        let back = Message::decode(msg.id().as_str(), &meta, msg.data().to_vec()).unwrap();
        assert_eq!(back.id(), msg.id());
        assert_eq!(back.meta(), msg.meta());
        assert_eq!(back.recipient(), msg.recipient());
        assert_eq!(back.data(), msg.data());
        let err = Message::decode("x", b"{}", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("message x"), "{err}");
    }
}
