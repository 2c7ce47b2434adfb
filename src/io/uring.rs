//! The io_uring engine: every request of a query in flight at once, completions taken in any
//! order. The traps, and how each is handled:
//! - O_DIRECT alignment: guaranteed by [`ReadRequest`] and [`AlignedBuf`].
//! - Short reads: the remainder is resubmitted from where the read stopped (the device returns
//!   whole logical blocks, so the remainder stays aligned); a zero-byte read means the file is
//!   shorter than the request and is an error, never an infinite loop.
//! - EINTR / EAGAIN on a completion: the same read is resubmitted.
//! - Buffers outlive the reads: `read_all` never returns while a read is in flight, not even on
//!   error, and `Drop` drains whatever a panicking callback left behind.

use std::io;

use io_uring::{opcode, types, IoUring};

use super::{context, AlignedBuf, ReadRequest};

/// Ring size: the most reads one thread keeps in flight.
const DEPTH: u32 = 256;

pub(super) struct UringReader {
    ring: IoUring,
    in_flight: usize,
}

impl UringReader {
    pub fn new() -> io::Result<Self> {
        Ok(UringReader { ring: IoUring::new(DEPTH)?, in_flight: 0 })
    }

    /// Waits for every read still in flight and discards it.
    fn drain(&mut self) {
        while self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The ring is unusable; leaking beats letting the kernel write into freed memory.
                Err(_) => std::process::abort(),
            }
            self.in_flight -= self.ring.completion().count();
        }
    }

    fn push(&mut self, req: &ReadRequest, buf: &mut AlignedBuf, done: usize, tag: usize) {
        let len = req.len() - done;
        // SAFETY: done < len ≤ buf.len(), so the pointer and length stay inside the buffer.
        let ptr = unsafe { buf.as_mut_ptr().add(done) };
        let sqe = opcode::Read::new(types::Fd(req.fd()), ptr, len as u32)
            .offset(req.offset() + done as u64)
            .build()
            .user_data(tag as u64);
        // SAFETY: the buffer stays allocated and untouched by us until this read completes:
        // read_all does not return (and Drop does not finish) while in_flight > 0, and the
        // buffers are owned by the thread's Reader, which outlives this engine's calls.
        // The queue has room: in_flight ≤ DEPTH and every slot is submitted before the next push.
        unsafe { self.ring.submission().push(&sqe).expect("submission queue has room") };
        self.in_flight += 1;
    }

    pub fn read_all<E: From<io::Error>>(
        &mut self,
        reqs: &[ReadRequest],
        bufs: &mut [AlignedBuf],
        mut on_done: impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.drain();
        let mut done = vec![0usize; reqs.len()];
        let mut next = 0;
        let mut first_err: Option<E> = None;
        loop {
            while first_err.is_none() && next < reqs.len() && self.in_flight < DEPTH as usize {
                self.push(&reqs[next], &mut bufs[next], 0, next);
                next += 1;
            }
            if self.in_flight == 0 {
                break;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    // Submission itself failed: nothing more is queued; drain what the kernel has.
                    first_err.get_or_insert(E::from(context(e, "io_uring_enter")));
                    self.drain();
                    break;
                }
            }
            let completions: Vec<(usize, i32)> =
                self.ring.completion().map(|c| (c.user_data() as usize, c.result())).collect();
            for (tag, res) in completions {
                self.in_flight -= 1;
                let req = &reqs[tag];
                if res == -libc::EINTR || res == -libc::EAGAIN {
                    if first_err.is_none() {
                        self.push(req, &mut bufs[tag], done[tag], tag);
                    }
                    continue;
                }
                let outcome = if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else if res == 0 {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ends before the requested range"))
                } else {
                    done[tag] += res as usize;
                    Ok(())
                };
                if let Err(e) = outcome {
                    let e = context(e, format_args!("io_uring read of {} bytes at offset {}", req.len(), req.offset()));
                    first_err.get_or_insert(E::from(e));
                    continue;
                }
                if first_err.is_some() {
                    continue;
                }
                if done[tag] < req.len() {
                    self.push(req, &mut bufs[tag], done[tag], tag);
                } else if let Err(e) = on_done(tag, bufs[tag].as_slice()) {
                    first_err = Some(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for UringReader {
    fn drop(&mut self) {
        self.drain();
    }
}
