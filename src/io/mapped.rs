//! Read-only memory maps of index files, used in place: a graph or a vectors file larger than
//! RAM is mapped, and the kernel pages in what searches touch (faiss's `IO_FLAG_MMAP`).

use std::fs::File;
use std::io;
use std::ops::Range;

/// A read-only map of one file and the byte range of it that holds an array of little-endian
/// numbers.
pub struct Mapped {
    map: memmap2::Mmap,
    range: Range<usize>,
}

impl Mapped {
    /// Maps `file` and keeps `range` of it. Fails with `InvalidInput` where the range lies past
    /// the file or is not 4-byte aligned (a map starts on a page, so `range.start` decides),
    /// and with `Unsupported` on a big-endian machine, where the stored little-endian numbers
    /// cannot be used in place (the caller reads them into RAM instead).
    pub fn new(file: &File, range: Range<usize>) -> io::Result<Self> {
        if cfg!(target_endian = "big") {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "big-endian: numbers are converted on read"));
        }
        if !range.start.is_multiple_of(4) || !range.len().is_multiple_of(4) || range.start > range.end {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("range {range:?} is not 4-byte aligned")));
        }
        // SAFETY: the map is read-only, and index files are immutable once committed: they are
        // written under temporary names and renamed when whole, never rewritten in place, and
        // removed only when no generation names them (their pages stay valid while mapped). A
        // process that truncates an index file behind our back is outside that contract, as
        // it is for every mmap-based reader (faiss's included).
        let map = unsafe { memmap2::Mmap::map(file)? };
        if range.end > map.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {range:?} is past the file's {} bytes", map.len()),
            ));
        }
        Ok(Mapped { map, range })
    }

    /// The mapped range's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }

    /// Advises the kernel that access is random (no read-ahead past the pages touched).
    pub fn advise_random(&self) {
        // Advice only: a kernel that refuses it still serves the map.
        let _ = self.map.advise(memmap2::Advice::Random);
    }
}

impl AsRef<[u32]> for Mapped {
    fn as_ref(&self) -> &[u32] {
        // Alignment and length were checked in `new`; the map starts on a page.
        <[u32] as zerocopy::FromBytes>::ref_from_bytes(self.bytes()).unwrap_or(&[])
    }
}

impl AsRef<[f32]> for Mapped {
    fn as_ref(&self) -> &[f32] {
        <[f32] as zerocopy::FromBytes>::ref_from_bytes(self.bytes()).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_a_range_of_numbers_in_place() {
        let mut f = tempfile::tempfile().unwrap();
        let words: Vec<u8> = (0u32..2048).flat_map(|v| v.to_le_bytes()).collect();
        f.write_all(&words).unwrap();
        let m = Mapped::new(&f, 4096..8192).unwrap();
        let v: &[u32] = m.as_ref();
        assert_eq!((v.len(), v[0], v[1023]), (1024, 1024, 2047));
        let x: &[f32] = m.as_ref();
        assert_eq!(x.len(), 1024);
        assert!(Mapped::new(&f, 2..10).is_err(), "unaligned");
        assert!(Mapped::new(&f, 0..9000).is_err(), "past the end");
    }
}
