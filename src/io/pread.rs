//! The positional-read engine: one request at a time. The fallback where io_uring is missing
//! and the reference the io_uring engine is tested against.

use std::io;
use std::os::unix::fs::FileExt;

use super::{context, AlignedBuf, ReadRequest};

/// Reads `r` into `buf` and hands the bytes to `on_done(tag, bytes)`.
pub(super) fn read<E: From<io::Error>>(
    r: &ReadRequest,
    buf: &mut AlignedBuf,
    tag: u64,
    on_done: impl FnOnce(u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    buf.resize(r.len());
    // read_exact_at retries EINTR and short reads, and reports EOF as UnexpectedEof.
    r.file()
        .read_exact_at(buf.as_mut_slice(), r.offset())
        .map_err(|e| context(e, format_args!("pread of {} bytes at offset {}", r.len(), r.offset())))?;
    on_done(tag, buf.as_slice())
}
