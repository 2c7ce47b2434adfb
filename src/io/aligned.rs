//! Page-aligned owned buffers and read requests that cannot be misaligned: O_DIRECT needs the
//! file offset, the length and the buffer address all aligned, and an unaligned request fails
//! with EINVAL at run time. Checking once, at construction, makes that failure unrepresentable.

use std::alloc::{self, Layout};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;

/// Alignment of buffers, offsets and lengths.
pub const ALIGN: usize = 4096;

/// A heap buffer whose address is a multiple of [`ALIGN`], zero-initialised when it grows.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out &[u8].
unsafe impl Sync for AlignedBuf {}

impl Default for AlignedBuf {
    fn default() -> Self {
        AlignedBuf::new()
    }
}

impl AlignedBuf {
    /// An empty buffer; nothing is allocated until it grows.
    pub const fn new() -> Self {
        AlignedBuf { ptr: NonNull::dangling(), len: 0, cap: 0 }
    }

    /// Sets the length to `len`, reallocating (and zeroing) only when it must grow.
    pub fn resize(&mut self, len: usize) {
        if len > self.cap {
            let cap = len.next_multiple_of(ALIGN).max(ALIGN);
            let layout = Layout::from_size_align(cap, ALIGN).expect("buffer size overflows isize");
            // SAFETY: layout has non-zero size.
            let p = unsafe { alloc::alloc_zeroed(layout) };
            let Some(p) = NonNull::new(p) else { alloc::handle_alloc_error(layout) };
            self.free();
            self.ptr = p;
            self.cap = cap;
        }
        self.len = len;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Raw pointer for the kernel to write into; valid for `len()` bytes while `self` lives.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.cap == 0 {
            return &[];
        }
        // SAFETY: ptr is valid for cap ≥ len initialised (zeroed at allocation) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.cap == 0 {
            return &mut [];
        }
        // SAFETY: as in as_slice, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn free(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in resize with exactly this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.cap, ALIGN)) };
            self.cap = 0;
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        self.free();
    }
}

/// One read of `len` bytes at `offset` of a file; both multiples of [`ALIGN`], `len` > 0.
#[derive(Clone, Copy, Debug)]
pub struct ReadRequest<'a> {
    file: &'a std::fs::File,
    offset: u64,
    len: usize,
}

impl<'a> ReadRequest<'a> {
    pub fn new(file: &'a std::fs::File, offset: u64, len: usize) -> std::io::Result<Self> {
        if !offset.is_multiple_of(ALIGN as u64) || !len.is_multiple_of(ALIGN) || len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("read of {len} bytes at offset {offset} is not {ALIGN}-byte aligned"),
            ));
        }
        Ok(ReadRequest { file, offset, len })
    }

    pub fn file(&self) -> &'a std::fs::File {
        self.file
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_reusable() {
        let mut b = AlignedBuf::default();
        assert!(b.as_slice().is_empty());
        b.resize(5000);
        assert_eq!(b.as_mut_ptr() as usize % ALIGN, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[4999] = 7;
        let p = b.as_mut_ptr();
        b.resize(100);
        assert_eq!(b.as_mut_ptr(), p, "shrinking must not reallocate");
        b.resize(20000);
        assert_eq!(b.len(), 20000);
    }

    #[test]
    fn misaligned_requests_are_refused() {
        let f = tempfile::tempfile().unwrap();
        assert!(ReadRequest::new(&f, 4096, 8192).is_ok());
        assert!(ReadRequest::new(&f, 100, 4096).is_err());
        assert!(ReadRequest::new(&f, 0, 4000).is_err());
        assert!(ReadRequest::new(&f, 0, 0).is_err());
    }
}
