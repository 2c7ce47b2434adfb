//! The io_uring engine: requests added while others are in flight, completions taken in any
//! order. The traps, and how each is handled:
//! - O_DIRECT alignment: guaranteed by [`ReadRequest`] and [`AlignedBuf`].
//! - Short reads: the remainder is resubmitted from where the read stopped (the device returns
//!   whole logical blocks, so the remainder stays aligned); a zero-byte read means the file is
//!   shorter than the request and is an error, never an infinite loop.
//! - EINTR / EAGAIN on a completion: the same read is resubmitted.
//! - More requests than the ring holds: the rest wait in a backlog, submitted as reads complete.
//! - Buffers outlive the reads: a read's buffer is handed back only once its completion has
//!   arrived; the owner of a batch ([`super::Flight`]) drains every read before it ends, also on
//!   error or panic, and `Drop` drains whatever is left.
//! - Registered buffers: each ring registers one page-aligned arena with the kernel, so reads
//!   into it (`READ_FIXED`) skip pinning and mapping pages on every I/O. Reads take the first
//!   free run of its pages; those that find none use ordinary buffers. Registration counts
//!   against RLIMIT_MEMLOCK, which root bypasses and users often hit: when the kernel refuses,
//!   the ring works without an arena and says so once.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{opcode, types, IoUring};

use super::{context, AlignedBuf, ReadRequest, ALIGN};

/// Ring size: the most reads one thread keeps in flight.
const DEPTH: u32 = 256;
/// Bytes of registered memory per ring: a query probing 64 lists of 16 KiB fits four times over.
const ARENA: usize = 4 << 20;
const ARENA_PAGES: usize = ARENA / ALIGN;

static REGISTRATION_WARNED: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
thread_local! {
    /// Makes buffer registration fail on this thread, as RLIMIT_MEMLOCK would for a user.
    pub(super) static REFUSE_REGISTRATION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where a read's bytes land.
#[derive(Clone, Copy)]
enum Slot {
    /// From this page of the registered arena on.
    Arena(usize),
    /// In this buffer of the pool.
    Pool(usize),
}

/// The registered arena: its allocation and a raw pointer to it taken once, so that the kernel
/// writing one region and the callback reading another never go through a `&mut` of the whole.
struct Arena {
    _buf: AlignedBuf,
    base: NonNull<u8>,
    /// One bit per page, set where the page is free.
    free: [u64; ARENA_PAGES / 64],
}

// SAFETY: an Arena uniquely owns its allocation (`base` points into `_buf`), and it lives in the
// `UringReader` whose ring it is registered with, so the two move together. A reader moves
// between threads only between batches, when no read is in flight (every batch drains its
// reads before it ends, also on error), so no kernel write races the move.
// `tests/end_to_end.rs` searches with readers handed between rayon threads.
unsafe impl Send for Arena {}

impl Arena {
    /// The first run of `n` free pages, taken. Walks the bitmap a run at a time (taken pages
    /// and free ones alike are skipped by counting bits), so a nearly full arena costs a few
    /// steps per read, not one per page.
    fn take(&mut self, n: usize) -> Option<usize> {
        // `run` free pages end just before `page`.
        let (mut run, mut page) = (0, 0);
        while page < ARENA_PAGES {
            let left = 64 - page % 64;
            let bits = self.free[page / 64] >> (page % 64);
            if bits & 1 == 0 {
                run = 0;
                page += (bits.trailing_zeros() as usize).min(left);
                continue;
            }
            let ones = bits.trailing_ones() as usize;
            if run + ones >= n {
                let first = page - run;
                (first..first + n).for_each(|p| self.free[p / 64] &= !(1 << (p % 64)));
                return Some(first);
            }
            run += ones;
            page += ones;
        }
        None
    }

    fn give_back(&mut self, first: usize, n: usize) {
        (first..first + n).for_each(|p| self.free[p / 64] |= 1 << (p % 64));
    }
}

/// One read the caller added: where it goes, how much has arrived, and the caller's tag.
struct Op {
    fd: RawFd,
    offset: u64,
    len: usize,
    done: usize,
    slot: Slot,
    tag: u64,
}

pub(super) struct UringReader {
    ring: IoUring,
    arena: Option<Arena>,
    /// Buffers for reads the arena has no room for, and which of them are free.
    pool: Vec<AlignedBuf>,
    idle: Vec<usize>,
    /// Every read added and not yet handed back, by its number (the SQE's user data).
    ops: Vec<Option<Op>>,
    spare: Vec<usize>,
    /// Reads waiting for room in the ring, oldest first.
    backlog: VecDeque<usize>,
    /// Reads pushed to the ring and not yet completed.
    in_flight: usize,
    /// Completions taken from the ring and not yet handed back (result by read number).
    arrived: VecDeque<(usize, i32)>,
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
        Ok(UringReader {
            ring,
            arena,
            pool: Vec::new(),
            idle: Vec::new(),
            ops: Vec::new(),
            spare: Vec::new(),
            backlog: VecDeque::new(),
            in_flight: 0,
            arrived: VecDeque::new(),
        })
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
        Ok(Arena { _buf: buf, base, free: [u64::MAX; ARENA_PAGES / 64] })
    }

    /// Whether reads go into registered memory.
    #[cfg(test)]
    pub fn registered(&self) -> bool {
        self.arena.is_some()
    }

    /// Reads added and not yet handed back (in flight or waiting for room).
    pub fn pending(&self) -> usize {
        self.in_flight + self.backlog.len() + self.arrived.len()
    }

    /// Adds a read, tagged `tag` for [`wait`](Self::wait); it goes to the kernel at the next
    /// [`submit`](Self::submit) or `wait`. The file must stay open until the read is handed back
    /// or drained (the caller's [`super::Flight`] holds it for that long).
    pub fn add(&mut self, req: &ReadRequest, tag: u64) {
        let pages = req.len() / ALIGN;
        let slot = match self.arena.as_mut().and_then(|a| a.take(pages)) {
            Some(first) => Slot::Arena(first),
            None => {
                let b = self.idle.pop().unwrap_or_else(|| {
                    self.pool.push(AlignedBuf::default());
                    self.pool.len() - 1
                });
                // Not in flight (it was idle), so it may move.
                self.pool[b].resize(req.len());
                Slot::Pool(b)
            }
        };
        let op = Op { fd: req.fd(), offset: req.offset(), len: req.len(), done: 0, slot, tag };
        let no = match self.spare.pop() {
            Some(no) => {
                self.ops[no] = Some(op);
                no
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        };
        self.backlog.push_back(no);
    }

    /// Hands the reads added so far to the kernel (as many as the ring has room for).
    pub fn submit(&mut self) -> io::Result<()> {
        self.fill();
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(context(e, "io_uring_enter")),
            }
        }
    }

    /// Moves reads from the backlog into the submission queue while the ring has room.
    fn fill(&mut self) {
        while self.in_flight < DEPTH as usize {
            let Some(no) = self.backlog.pop_front() else { break };
            let op = self.ops[no].as_ref().unwrap_or_else(|| unreachable!("a backlogged read is live"));
            let len = op.len - op.done;
            let fd = types::Fd(op.fd);
            let offset = op.offset + op.done as u64;
            let sqe = match (op.slot, &self.arena) {
                (Slot::Arena(first), Some(arena)) => {
                    // SAFETY: pages first ..< first + len / ALIGN were taken for this read inside
                    // the arena, and done < op.len, so the range stays inside it.
                    let ptr = unsafe { arena.base.as_ptr().add(first * ALIGN + op.done) };
                    opcode::ReadFixed::new(fd, ptr, len as u32, 0).offset(offset).build()
                }
                (Slot::Pool(b), _) => {
                    // SAFETY: done < op.len = pool[b].len(), so the pointer stays inside the buffer.
                    let ptr = unsafe { self.pool[b].as_mut_ptr().add(op.done) };
                    opcode::Read::new(fd, ptr, len as u32).offset(offset).build()
                }
                (Slot::Arena(_), None) => unreachable!("arena slots are only assigned when an arena exists"),
            }
            .user_data(no as u64);
            // SAFETY: the buffer stays allocated and is neither read, moved nor handed to another
            // read until this one completes: its slot is given back only after the completion
            // (`wait`, `drain`), pool buffers are resized only while idle, and the reader (which
            // owns arena and pool) drains in Drop. The queue has room: entries in it are counted in
            // in_flight ≤ DEPTH, the ring's size.
            unsafe { self.ring.submission().push(&sqe).expect("submission queue has room") };
            self.in_flight += 1;
        }
    }

    /// Waits for at least one read to complete (none: returns at once) and hands each read that
    /// has arrived whole to `on_done(tag, bytes)`. A read that failed, or a callback that failed,
    /// makes this return the first error (later completions of the same wake-up are handed
    /// back unread); the caller then stops and drains.
    pub fn wait<E: From<io::Error>>(&mut self, mut on_done: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
        self.fill();
        if self.in_flight == 0 {
            return Ok(());
        }
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(E::from(context(e, "io_uring_enter"))),
            }
        }
        // Counted out of the ring at once, and kept where `drain` finds them: a callback that
        // panics must not leave completions the ring will never deliver again.
        let before = self.arrived.len();
        self.arrived.extend(self.ring.completion().map(|c| (c.user_data() as usize, c.result())));
        self.in_flight -= self.arrived.len() - before;
        let mut first_err: Option<E> = None;
        while let Some((no, res)) = self.arrived.pop_front() {
            let op = self.ops[no].as_mut().unwrap_or_else(|| unreachable!("a completed read is live"));
            if res == -libc::EINTR || res == -libc::EAGAIN {
                self.backlog.push_front(no);
                continue;
            }
            let outcome = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else if res == 0 {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ends before the requested range"))
            } else {
                op.done += res as usize;
                Ok(())
            };
            if let Err(e) = outcome {
                let e = context(e, format_args!("io_uring read of {} bytes at offset {}", op.len, op.offset));
                first_err.get_or_insert(E::from(e));
                self.release(no);
                continue;
            }
            if op.done < op.len {
                self.backlog.push_back(no);
                continue;
            }
            let (slot, len, tag) = (op.slot, op.len, op.tag);
            // Given back before the callback, which may panic; nothing can take the buffer
            // while `bytes` lives, since that needs `&mut self`.
            self.release(no);
            if first_err.is_some() {
                continue;
            }
            let bytes = match (slot, &self.arena) {
                // SAFETY: these pages were filled by a completed read and no read in flight
                // targets them (each read has pages of its own, and none is added before
                // `bytes` is dropped); the arena outlives `bytes`.
                (Slot::Arena(first), Some(a)) => unsafe {
                    std::slice::from_raw_parts(a.base.as_ptr().add(first * ALIGN), len)
                },
                (Slot::Pool(b), _) => self.pool[b].as_slice(),
                (Slot::Arena(_), None) => unreachable!("arena slots are only assigned when an arena exists"),
            };
            if let Err(e) = on_done(tag, bytes) {
                first_err = Some(e);
            }
        }
        self.fill();
        first_err.map_or(Ok(()), Err)
    }

    /// Gives a read's buffer and number back; the read must not be in flight.
    fn release(&mut self, no: usize) {
        let op = self.ops[no].take().unwrap_or_else(|| unreachable!("released once"));
        match op.slot {
            Slot::Arena(first) => {
                if let Some(a) = self.arena.as_mut() {
                    a.give_back(first, op.len / ALIGN);
                }
            }
            Slot::Pool(b) => self.idle.push(b),
        }
        self.spare.push(no);
    }

    /// Forgets the reads not yet submitted, waits for those in flight and discards them.
    pub fn drain(&mut self) {
        while let Some((no, _)) = self.arrived.pop_front() {
            self.release(no);
        }
        while let Some(no) = self.backlog.pop_front() {
            self.release(no);
        }
        while self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The ring is unusable; leaking beats letting the kernel write into freed memory.
                Err(_) => std::process::abort(),
            }
            let done: Vec<usize> = self.ring.completion().map(|c| c.user_data() as usize).collect();
            for no in done {
                self.in_flight -= 1;
                self.release(no);
            }
        }
    }
}

impl Drop for UringReader {
    fn drop(&mut self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arena whose bitmap is tested alone (its one page of memory is never read).
    fn bitmap_only() -> Arena {
        let mut buf = AlignedBuf::default();
        buf.resize(ALIGN);
        let base = NonNull::new(buf.as_mut_ptr()).unwrap();
        Arena { _buf: buf, base, free: [u64::MAX; ARENA_PAGES / 64] }
    }

    #[test]
    fn the_arena_hands_out_the_first_free_run_and_takes_pages_back() {
        let mut a = bitmap_only();
        assert_eq!(a.take(3), Some(0));
        assert_eq!(a.take(62), Some(3));
        assert_eq!(a.take(2), Some(65), "a run may cross a word of the bitmap");
        a.give_back(0, 3);
        assert_eq!(a.take(4), Some(67), "a hole too small is passed over");
        assert_eq!(a.take(2), Some(0), "and filled by what fits");
        assert_eq!(a.take(1), Some(2));
        assert_eq!(a.take(ARENA_PAGES), None);
        a.give_back(0, 71);
        assert_eq!(a.take(ARENA_PAGES), Some(0), "everything given back is one run again");
        assert_eq!(a.take(1), None);
    }

    /// Any sequence of takes and give-backs answers as a page-by-page first fit does.
    #[test]
    fn the_arena_is_a_first_fit() {
        let mut a = bitmap_only();
        let mut model = vec![true; ARENA_PAGES];
        let mut held: Vec<(usize, usize)> = Vec::new();
        let mut state = 11u64;
        let mut below = |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        for step in 0..20_000 {
            if held.is_empty() || below(3) > 0 {
                let most = if below(10) == 0 { 300 } else { 24 };
                let n = 1 + below(most);
                let expect = (0..=ARENA_PAGES - n).find(|&f| model[f..f + n].iter().all(|&x| x));
                assert_eq!(a.take(n), expect, "step {step}: take {n}");
                if let Some(f) = expect {
                    model[f..f + n].iter_mut().for_each(|x| *x = false);
                    held.push((f, n));
                }
            } else {
                let (f, n) = held.swap_remove(below(held.len()));
                a.give_back(f, n);
                model[f..f + n].iter_mut().for_each(|x| *x = true);
            }
        }
    }
}
