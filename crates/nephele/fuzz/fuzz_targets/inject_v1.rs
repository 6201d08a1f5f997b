//! The inject/v1 path from request body to spooled message, without the
//! HTTP and policy layers: parse and check the JSON, compile its templates,
//! render each recipient's message, stamp the meta the handler stamps, and
//! round-trip it through the spool encoding. No input may panic; a message
//! that was generated must come back from the spool unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use message::Message;
use nephele::inject::limits::{InjectionLimits, RequestBudget};
use nephele::inject::render::Templates;
use nephele::inject::request;
use serde_json::json;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Enough recipients to cover per-recipient substitutions without making
/// one input as slow as a thousand.
const MAX_RECIPIENTS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Ok(valid) = request::parse(data) else {
        return;
    };
    let Ok(templates) = Templates::compile(&valid.request) else {
        return;
    };
    let mut budget = RequestBudget::new(
        &InjectionLimits::default(),
        Arc::new(AtomicBool::new(false)),
    );
    for index in 0..valid.recipients.len().min(MAX_RECIPIENTS) {
        let Ok(rendered) = templates.render_message(&valid, index, &mut budget) else {
            continue;
        };
        // A recipient that failed validation has no message.
        let Ok(recipient) = valid.recipients[index].clone() else {
            continue;
        };
        let mut message = Message::new(valid.sender.clone(), recipient, rendered);
        message.set_meta("http_auth", json!("fuzz"));
        // The header accessors the policy API exposes read generated text.
        let _ = message.from_header();
        let _ = message.to_header();
        let stored = Message::decode(
            message.id().as_str(),
            &message.encode_meta(),
            message.data().to_vec(),
        )
        .expect("a generated message decodes from its own spool encoding");
        assert_eq!(stored.sender().email(), message.sender().email());
        assert_eq!(stored.recipient().email(), message.recipient().email());
        assert_eq!(stored.data(), message.data());
        assert_eq!(stored.meta(), message.meta());
    }
});
