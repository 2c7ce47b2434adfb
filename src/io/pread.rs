//! The positional-read engine: one request at a time. The fallback where io_uring is missing
//! and the reference the io_uring engine is tested against.

use std::io;
use std::os::unix::fs::FileExt;

use super::{context, AlignedBuf, ReadRequest};

pub(super) fn read_all<E: From<io::Error>>(
    reqs: &[ReadRequest],
    bufs: &mut [AlignedBuf],
    mut on_done: impl FnMut(usize, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    for (i, (r, b)) in reqs.iter().zip(bufs.iter_mut()).enumerate() {
        b.resize(r.len());
        // read_exact_at retries EINTR and short reads, and reports EOF as UnexpectedEof.
        r.file()
            .read_exact_at(b.as_mut_slice(), r.offset())
            .map_err(|e| context(e, format_args!("pread of {} bytes at offset {}", r.len(), r.offset())))?;
        on_done(i, b.as_slice())?;
    }
    Ok(())
}
