//! Early writeback: ask the kernel to start writing a file's dirty pages to
//! disk while we go on producing more. A pull makes everything durable
//! before it commits (fsync per blob, syncfs per layer); without these hints
//! the disk idles while a layer is downloaded or decompressed and then the
//! whole layer is flushed at once, with the pull waiting on it.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// Bytes written between two hints.
const STEP: u64 = 8 << 20;

/// Start writing back `len` bytes at `offset` of `file`; does not wait.
/// Only a hint: errors are ignored (the later fsync/syncfs reports them).
#[allow(unsafe_code)] // the one call into libc: rustix has no sync_file_range
pub(crate) fn start(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: sync_file_range takes a descriptor and integers and touches no
    // memory of ours; the descriptor is open because `file` is borrowed for
    // the duration of the call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Where a file's hints have got to; the caller keeps the count of bytes
/// written (it has one already) and passes it in.
#[derive(Default)]
pub(crate) struct Hints {
    hinted: u64,
}

impl Hints {
    /// `written` bytes of `file` are written so far: hint every [`STEP`].
    pub fn wrote(&mut self, file: &File, written: u64) {
        if written - self.hinted >= STEP {
            start(file, self.hinted, written - self.hinted);
            self.hinted = written;
        }
    }

    /// After the last write: hint the rest too, if the file is big enough
    /// for it to matter (small files are left to the one syncfs, which can
    /// write them together).
    pub fn done(&mut self, file: &File, written: u64) {
        if written >= STEP && written > self.hinted {
            start(file, self.hinted, written - self.hinted);
            self.hinted = written;
        }
    }
}

/// A file written with [`Hints`], for `io::copy`.
pub(crate) struct Writer<'a> {
    pub file: &'a mut File,
    pub written: u64,
    pub hints: Hints,
}

impl Writer<'_> {
    pub fn new(file: &mut File) -> Writer<'_> {
        Writer { file, written: 0, hints: Hints::default() }
    }

    /// Hint what is left; returns the bytes written.
    pub fn finish(mut self) -> u64 {
        self.hints.done(self.file, self.written);
        self.written
    }
}

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.hints.wrote(self.file, self.written);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
