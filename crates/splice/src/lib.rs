//! splice(2) through a pipe, the in-kernel buffer between two descriptors:
//! the proxy relays tunnels with it and the bench discard server drains
//! sockets into `/dev/null` with it. Every call is non-blocking; callers
//! wait for readiness themselves.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A new pipe's capacity (the kernel default).
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// A non-blocking, close-on-exec pipe.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes it holds at most; one splice in moves up to this much.
    capacity: usize,
    /// Whether [`Pipe::grow_once`] ran (it stays tried when refused).
    grow_tried: bool,
}

impl Pipe {
    /// A pipe of [`DEFAULT_CAPACITY`].
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read,
            write,
            capacity: DEFAULT_CAPACITY,
            grow_tried: false,
        })
    }

    /// Bytes it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ask once for `bytes` of capacity; later calls do nothing. Past
    /// `pipe-max-size` or the user's pipe page limits the kernel refuses
    /// and the pipe keeps its size.
    pub fn grow_once(&mut self, bytes: usize) {
        if self.grow_tried {
            return;
        }
        self.grow_tried = true;
        let asked = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
        let granted = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_SETPIPE_SZ, asked) };
        if granted > 0 {
            self.capacity = granted as usize;
        }
    }

    /// Move up to `len` bytes from `from` into the pipe. `Ok(0)` is EOF on
    /// `from`. A short count does not prove `from` drained: the pipe may
    /// have run out of slots (one per fragment) first.
    pub fn fill_from(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), len)
    }

    /// Move up to `len` bytes from the pipe to `to`.
    pub fn drain_to(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), to, len)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors and null offsets (pipes and sockets have
    // no file position).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn bytes_pass_through_and_growth_is_asked_once() {
        let (mut writer, from) = UnixStream::pair().unwrap();
        let (to, mut reader) = UnixStream::pair().unwrap();
        let mut pipe = Pipe::new().unwrap();
        assert_eq!(pipe.capacity(), DEFAULT_CAPACITY);
        pipe.grow_once(1 << 18);
        let grown = pipe.capacity();
        assert!(grown >= DEFAULT_CAPACITY);
        pipe.grow_once(DEFAULT_CAPACITY * 8);
        assert_eq!(pipe.capacity(), grown, "asked only once");

        writer.write_all(b"hello").unwrap();
        let n = pipe.fill_from(from.as_raw_fd(), pipe.capacity()).unwrap();
        assert_eq!(n, 5);
        assert_eq!(pipe.drain_to(to.as_raw_fd(), n).unwrap(), 5);
        let mut got = [0u8; 5];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Nothing queued: non-blocking, so WouldBlock rather than a wait.
        from.set_nonblocking(true).unwrap();
        let err = pipe.fill_from(from.as_raw_fd(), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
