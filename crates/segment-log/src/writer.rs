//! The writer thread: segment files, their names, rotation and flushing.

use crate::{Compression, SegmentLogConfig};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Instant, SystemTime};
use tracing::{debug, error};

/// The bytes of a segment on their way to its file.
enum Encoding {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Encoding {
    fn sink(&mut self) -> &mut dyn Write {
        match self {
            Encoding::Plain(file) => file,
            Encoding::Zstd(encoder) => encoder,
        }
    }
}

/// The segment being written.
struct Segment {
    path: PathBuf,
    encoding: Encoding,
    opened: Instant,
    written: u64,
}

impl Segment {
    fn open(dir: &Path, compression: Compression) -> std::io::Result<Self> {
        let (path, file) = create_segment_file(dir, SystemTime::now())?;
        let file = BufWriter::new(file);
        let encoding = match compression {
            Compression::None => Encoding::Plain(file),
            Compression::Zstd { level } => {
                Encoding::Zstd(zstd::stream::write::Encoder::new(file, level)?)
            }
        };
        Ok(Segment {
            path,
            encoding,
            opened: Instant::now(),
            written: 0,
        })
    }

    /// End the zstd frame, flush and sync: the file is complete.
    fn finish(self) {
        let file = match self.encoding {
            Encoding::Plain(file) => Ok(file),
            Encoding::Zstd(encoder) => encoder.finish(),
        };
        let result = file
            .and_then(|file| file.into_inner().map_err(|err| err.into_error()))
            .and_then(|file| file.sync_data());
        match result {
            Ok(()) => {
                debug!(path = %self.path.display(), bytes = self.written, "log segment finished")
            }
            Err(err) => {
                error!(path = %self.path.display(), error = %err, "finishing log segment failed")
            }
        }
    }
}

/// Owns the open segment; runs on the log's thread.
pub(crate) struct SegmentWriter {
    config: SegmentLogConfig,
    segment: Option<Segment>,
    line: Vec<u8>,
}

impl SegmentWriter {
    pub(crate) fn new(config: SegmentLogConfig) -> Self {
        SegmentWriter {
            config,
            segment: None,
            line: Vec::with_capacity(512),
        }
    }

    /// Write records as they come, a burst at a time, until every sender is
    /// gone; then finish the open segment.
    pub(crate) fn run<T: Serialize>(mut self, receiver: Receiver<T>) {
        loop {
            // Sleep until a record comes or the open segment is due.
            let received = match self.time_left() {
                Some(left) => receiver.recv_timeout(left),
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(record) => {
                    self.write(&record);
                    while let Ok(record) = receiver.try_recv() {
                        self.write(&record);
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => self.finish_if_due(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.finish_segment();
    }

    /// Until the open segment reaches `max_segment_duration`, if both exist.
    fn time_left(&self) -> Option<std::time::Duration> {
        let segment = self.segment.as_ref()?;
        let max = self.config.max_segment_duration?;
        Some(max.saturating_sub(segment.opened.elapsed()))
    }

    fn write<T: Serialize>(&mut self, record: &T) {
        self.line.clear();
        if let Err(err) = serde_json::to_writer(&mut self.line, record) {
            error!(log = self.config.name, error = %err, "log record does not serialize; dropped");
            return;
        }
        self.line.push(b'\n');
        if self.segment.is_none() {
            match Segment::open(&self.config.log_dir, self.config.compression) {
                Ok(opened) => self.segment = Some(opened),
                Err(err) => {
                    error!(dir = %self.config.log_dir.display(), error = %err, "opening a log segment failed; record lost");
                    return;
                }
            }
        }
        let Some(segment) = self.segment.as_mut() else {
            return;
        };
        if let Err(err) = segment.encoding.sink().write_all(&self.line) {
            error!(path = %segment.path.display(), error = %err, "writing a log record failed");
        }
        segment.written += self.line.len() as u64;
        if segment.written >= self.config.max_file_size {
            self.finish_segment();
        } else {
            self.finish_if_due();
        }
    }

    fn finish_if_due(&mut self) {
        if self.time_left().is_some_and(|left| left.is_zero()) {
            self.finish_segment();
        }
    }

    fn flush(&mut self) {
        if let Some(segment) = &mut self.segment {
            if let Err(err) = segment.encoding.sink().flush() {
                error!(path = %segment.path.display(), error = %err, "flushing a log segment failed");
            }
        }
    }

    fn finish_segment(&mut self) {
        if let Some(segment) = self.segment.take() {
            segment.finish();
        }
    }
}

/// A new file named [`segment_name`] of `at`; a name already taken gets
/// `.1`, `.2`, ... appended.
fn create_segment_file(dir: &Path, at: SystemTime) -> std::io::Result<(PathBuf, File)> {
    let name = segment_name(at);
    for attempt in 0..1000 {
        let file_name = if attempt == 0 {
            name.clone()
        } else {
            format!("{name}.{attempt}")
        };
        let path = dir.join(file_name);
        match File::options().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!(
        "no free log segment name for {name} in {}",
        dir.display()
    )))
}

/// `YYYYMMDD-HHMMSS` of `at`, in UTC.
pub fn segment_name(at: SystemTime) -> String {
    // `2024-05-06T07:08:09Z` → `20240506-070809`
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn segment_names_are_utc_timestamps() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_715_000_000);
        assert_eq!(segment_name(at), "20240506-125320");
    }

    #[test]
    fn a_taken_name_gets_a_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_715_000_000);
        let names: Vec<_> = (0..3)
            .map(|_| create_segment_file(dir.path(), at).unwrap().0)
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["20240506-125320", "20240506-125320.1", "20240506-125320.2"]
        );
    }
}
