//! The io_uring engine: every request of a query in flight at once, completions taken in any
//! order. The traps, and how each is handled:
//! - O_DIRECT alignment: guaranteed by [`ReadRequest`] and [`AlignedBuf`].
//! - Short reads: the remainder is resubmitted from where the read stopped (the device returns
//!   whole logical blocks, so the remainder stays aligned); a zero-byte read means the file is
//!   shorter than the request and is an error, never an infinite loop.
//! - EINTR / EAGAIN on a completion: the same read is resubmitted.
//! - Buffers outlive the reads: `read_all` never returns while a read is in flight, not even on
//!   error, and `Drop` drains whatever a panicking callback left behind.
//! - Registered buffers: each ring registers one page-aligned arena with the kernel, so reads
//!   into it (`READ_FIXED`) skip pinning and mapping pages on every I/O. A query's requests are
//!   laid out in the arena in order; those that do not fit use ordinary buffers. Registration
//!   counts against RLIMIT_MEMLOCK, which root bypasses and users often hit: when the kernel
//!   refuses, the ring works without an arena and says so once.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{opcode, types, IoUring};

use super::{context, AlignedBuf, ReadRequest};

/// Ring size: the most reads one thread keeps in flight.
const DEPTH: u32 = 256;
/// Bytes of registered memory per ring: a query probing 64 lists of 16 KiB fits four times over.
const ARENA: usize = 4 << 20;

static REGISTRATION_WARNED: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
thread_local! {
    /// Makes buffer registration fail on this thread, as RLIMIT_MEMLOCK would for a user.
    pub(super) static REFUSE_REGISTRATION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where a request's bytes land.
#[derive(Clone, Copy)]
enum Slot {
    /// At this offset in the registered arena.
    Arena(usize),
    /// In this buffer of the caller's pool.
    Pool(usize),
}

/// The registered arena: its allocation and a raw pointer to it taken once, so that the kernel
/// writing one region and the callback reading another never go through a `&mut` of the whole.
struct Arena {
    _buf: AlignedBuf,
    base: NonNull<u8>,
}

// SAFETY: an Arena uniquely owns its allocation (`base` points into `_buf`), and it lives in the
// `UringReader` whose ring it is registered with, so the two move together. A reader moves
// between threads only between `read_all` calls, when no read is in flight (every call drains
// its completions before returning, also on error), so no kernel write races the move.
// `tests/end_to_end.rs` searches with readers handed between rayon threads.
unsafe impl Send for Arena {}

pub(super) struct UringReader {
    ring: IoUring,
    in_flight: usize,
    arena: Option<Arena>,
}

impl UringReader {
    pub fn new() -> io::Result<Self> {
        let ring = IoUring::new(DEPTH)?;
        let arena = match Self::register(&ring) {
            Ok(a) => Some(a),
            Err(e) => {
                if !REGISTRATION_WARNED.swap(true, Ordering::Relaxed) {
                    log::warn!("io_uring buffer registration refused ({e}); reading into unregistered buffers (raise RLIMIT_MEMLOCK to {} KiB per search thread to enable it)", ARENA >> 10);
                }
                None
            }
        };
        Ok(UringReader { ring, in_flight: 0, arena })
    }

    fn register(ring: &IoUring) -> io::Result<Arena> {
        #[cfg(test)]
        if REFUSE_REGISTRATION.with(|r| r.get()) {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        let mut buf = AlignedBuf::default();
        buf.resize(ARENA);
        let base = NonNull::new(buf.as_mut_ptr()).ok_or_else(|| io::Error::other("null arena"))?;
        let iov = libc::iovec { iov_base: base.as_ptr().cast(), iov_len: ARENA };
        // SAFETY: the iovec describes memory owned by `buf`, which moves into the returned Arena
        // (the heap allocation does not move) and lives as long as the ring: the Arena is a field
        // of the UringReader that owns the ring, and Drop drains every read before either goes.
        unsafe { ring.submitter().register_buffers(&[iov])? };
        Ok(Arena { _buf: buf, base })
    }

    /// Whether reads go into registered memory.
    #[cfg(test)]
    pub fn registered(&self) -> bool {
        self.arena.is_some()
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

    fn push(&mut self, req: &ReadRequest, slot: Slot, bufs: &mut [AlignedBuf], done: usize, tag: usize) {
        let len = req.len() - done;
        let fd = types::Fd(req.fd());
        let offset = req.offset() + done as u64;
        let sqe = match (slot, &self.arena) {
            (Slot::Arena(at), Some(arena)) => {
                // SAFETY: at + req.len() ≤ ARENA (checked when the slot was assigned) and
                // done < req.len(), so the range stays inside the registered arena.
                let ptr = unsafe { arena.base.as_ptr().add(at + done) };
                opcode::ReadFixed::new(fd, ptr, len as u32, 0).offset(offset).build()
            }
            (Slot::Pool(i), _) => {
                // SAFETY: done < len ≤ bufs[i].len(), so the pointer stays inside the buffer.
                let ptr = unsafe { bufs[i].as_mut_ptr().add(done) };
                opcode::Read::new(fd, ptr, len as u32).offset(offset).build()
            }
            (Slot::Arena(_), None) => unreachable!("arena slots are only assigned when an arena exists"),
        }
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
        let mut cursor = 0usize;
        let slots: Vec<Slot> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if self.arena.is_some() && cursor + r.len() <= ARENA {
                    cursor += r.len();
                    Slot::Arena(cursor - r.len())
                } else {
                    bufs[i].resize(r.len());
                    Slot::Pool(i)
                }
            })
            .collect();
        let mut done = vec![0usize; reqs.len()];
        let mut next = 0;
        let mut first_err: Option<E> = None;
        loop {
            while first_err.is_none() && next < reqs.len() && self.in_flight < DEPTH as usize {
                self.push(&reqs[next], slots[next], bufs, 0, next);
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
                        self.push(req, slots[tag], bufs, done[tag], tag);
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
                    self.push(req, slots[tag], bufs, done[tag], tag);
                    continue;
                }
                let bytes = match (slots[tag], &self.arena) {
                    // SAFETY: this region was filled by a completed read and no read in flight
                    // targets it (regions of one batch are disjoint); the arena outlives `bytes`.
                    (Slot::Arena(at), Some(a)) => unsafe {
                        std::slice::from_raw_parts(a.base.as_ptr().add(at), req.len())
                    },
                    (Slot::Pool(i), _) => bufs[i].as_slice(),
                    (Slot::Arena(_), None) => unreachable!("arena slots are only assigned when an arena exists"),
                };
                if let Err(e) = on_done(tag, bytes) {
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
