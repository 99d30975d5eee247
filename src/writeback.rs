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

/// Tracks how much of a file has been written and hints every [`STEP`] bytes.
#[derive(Default)]
pub(crate) struct Progress {
    written: u64,
    hinted: u64,
}

impl Progress {
    pub fn wrote(&mut self, file: &File, n: usize) {
        self.written += n as u64;
        if self.written - self.hinted >= STEP {
            start(file, self.hinted, self.written - self.hinted);
            self.hinted = self.written;
        }
    }

    /// After the last write: hint the rest too, if the file is big enough
    /// for it to matter (small files are left to the one syncfs, which can
    /// write them together).
    pub fn done(&mut self, file: &File) {
        if self.written >= STEP {
            start(file, self.hinted, self.written - self.hinted);
            self.hinted = self.written;
        }
    }
}

/// A file written through [`Progress`].
pub(crate) struct Writer<'a> {
    pub file: &'a mut File,
    pub progress: Progress,
}

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.progress.wrote(&*self.file, n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
