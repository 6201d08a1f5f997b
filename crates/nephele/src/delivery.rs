//! One delivery attempt: into a Maildir, or by SMTP (see [`crate::smtp`]).

use crate::logs::Response;
use crate::queue_config::{DeliveryProtocol, QueueConfig};
use crate::smtp::{SmtpDeliverer, Via};
use maildir::Maildir;
use message::Message;
use std::path::Path;
use std::time::Duration;

/// Bound on one delivery attempt.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The message is where it should be.
    Delivered(Response),
    /// Try again later.
    Transient(Response),
    /// Give up (bounce): an SMTP `5xx`, or every destination prohibited.
    Permanent(Response),
}

/// Try once to deliver `message` (for `domain`) as `config` says.
pub async fn attempt(
    config: &QueueConfig,
    domain: &str,
    message: &Message,
    smtp: &SmtpDeliverer,
) -> (Outcome, Via) {
    let hosts = match &config.protocol {
        Some(DeliveryProtocol::MaildirPath(_)) => {
            return (attempt_maildir(config, message).await, Via::default())
        }
        Some(DeliveryProtocol::Smtp(protocol)) => protocol.mx_list.as_slice(),
        None => &[],
    };
    smtp.deliver(config, domain, hosts, message).await
}

async fn attempt_maildir(config: &QueueConfig, message: &Message) -> Outcome {
    match &config.protocol {
        Some(DeliveryProtocol::MaildirPath(path)) => {
            let path = path.clone();
            let data = message.data().to_vec();
            let work = tokio::task::spawn_blocking(move || deliver_maildir(&path, &data));
            match tokio::time::timeout(DELIVERY_TIMEOUT, work).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(err)) => Outcome::Transient(Response::new(
                    451,
                    (4, 3, 0),
                    format!("maildir delivery task failed: {err}"),
                )),
                Err(_) => Outcome::Transient(Response::new(
                    451,
                    (4, 4, 7),
                    format!("maildir delivery did not finish within {DELIVERY_TIMEOUT:?}"),
                )),
            }
        }
        Some(DeliveryProtocol::Smtp(_)) | None => unreachable!("only called for maildir_path"),
    }
}

/// Store `data` in the Maildir at `path` (`new/`, atomically via `tmp/`),
/// creating the directories as needed (as KumoMTA does). Any failure, such
/// as a path that cannot be created, is transient: the attempt is retried.
pub fn deliver_maildir(path: &Path, data: &[u8]) -> Outcome {
    if let Err(err) = std::fs::create_dir_all(path) {
        return Outcome::Transient(Response::new(
            451,
            (4, 3, 0),
            format!("creating maildir_path {}: {err}", path.display()),
        ));
    }
    let maildir = Maildir::from(path.to_path_buf());
    if let Err(err) = maildir.create_dirs() {
        return Outcome::Transient(Response::new(
            451,
            (4, 3, 0),
            format!("creating the Maildir folders in {}: {err}", path.display()),
        ));
    }
    match maildir.store_new(data) {
        Ok(id) => Outcome::Delivered(Response::new(
            250,
            (2, 0, 0),
            format!("delivered to maildir {} as {id}", path.display()),
        )),
        Err(err) => Outcome::Transient(Response::new(
            451,
            (4, 3, 0),
            format!("writing to maildir {}: {err}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncreatable_directory_is_transient_then_delivers() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "a file where a directory should be").unwrap();
        let path = blocker.join("md");
        let outcome = deliver_maildir(&path, b"Subject: x\r\n\r\ny\r\n");
        assert!(
            matches!(outcome, Outcome::Transient(ref r) if r.content.contains("creating maildir_path")),
            "{outcome:?}"
        );
        std::fs::remove_file(&blocker).unwrap();
        let outcome = deliver_maildir(&path, b"Subject: x\r\n\r\ny\r\n");
        assert!(
            matches!(outcome, Outcome::Delivered(ref r) if r.code == 250),
            "{outcome:?}"
        );
        let files: Vec<_> = std::fs::read_dir(path.join("new")).unwrap().collect();
        assert_eq!(files.len(), 1);
    }
}
