//! Policy errors as users (API answers, log records) see them: the Lua message without the traceback
//! and location noise that only a developer reading the policy needs.

use crate::PolicyError;

/// The text a policy error contributes to an API answer or a log record:
/// the Lua message without traceback, `runtime error:` or `file:line:`.
pub fn policy_error_text(err: &PolicyError) -> String {
    match err {
        PolicyError::Handler { message, .. } => lua_error_text(message),
        other => other.to_string(),
    }
}

/// `text` up to its Lua `stack traceback:` (an answer to a client never
/// carries one), trimmed at the end.
pub fn without_traceback(text: &str) -> &str {
    let cut = text.find("stack traceback:").unwrap_or(text.len());
    text[..cut].trim_end()
}

fn lua_error_text(message: &str) -> String {
    let mut text = without_traceback(message).trim();
    text = text.strip_prefix("runtime error: ").unwrap_or(text);
    if let Some((head, rest)) = text.split_once(": ") {
        let is_location = head
            .rsplit_once(':')
            .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
        if is_location {
            text = rest;
        }
    }
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_error_text_is_the_message() {
        assert_eq!(
            lua_error_text("runtime error: /tmp/x/policy.lua:12: only scott is allowed\nstack traceback:\n\t[C]: in ?"),
            "only scott is allowed"
        );
        assert_eq!(lua_error_text("550 not you"), "550 not you");
        assert_eq!(lua_error_text("a: b"), "a: b");
    }

    #[test]
    fn the_traceback_is_cut() {
        assert_eq!(
            without_traceback("policy.lua:3: boom\nstack traceback:\n\t[C]: in ?"),
            "policy.lua:3: boom"
        );
        assert_eq!(without_traceback("plain"), "plain");
    }
}
