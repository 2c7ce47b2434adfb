//! The deletion set (format 1.4): which stored vectors a generation no longer returns. Each
//! entry names one deleted copy of an id still in the lists, the generation that deleted it and
//! its list; an entry hides the id in every segment an earlier generation wrote, so an id
//! deleted and then added again is hidden in its old place only.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{decode_file, encode_file, Cursor, FileHeader, FileKind, FormatError, HEADER_LEN};

/// Fixed part of the deletion set's payload, 16 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DeletionsHeader {
    pub count: U64,
    pub reserved: U64,
}

/// One deleted copy of an id, 16 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Deleted {
    pub id: U64,
    pub generation: U32,
    pub list: U32,
}

impl Deleted {
    pub fn new(id: u64, generation: u32, list: u32) -> Self {
        Deleted { id: id.into(), generation: generation.into(), list: list.into() }
    }

    fn key(&self) -> (u64, u32, u32) {
        (self.id.get(), self.generation.get(), self.list.get())
    }
}

/// A decoded deletion set: entries sorted by (id, generation, list), no two equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deletions {
    pub entries: Vec<Deleted>,
}

impl Deletions {
    /// A set of `entries` in any order (sorted and deduplicated here).
    pub fn new(mut entries: Vec<Deleted>) -> Self {
        entries.sort_unstable_by_key(Deleted::key);
        entries.dedup_by_key(|e| e.key());
        Deletions { entries }
    }

    pub fn encode(&self, index_id: [u8; 16]) -> Vec<u8> {
        let h = DeletionsHeader { count: (self.entries.len() as u64).into(), reserved: 0.into() };
        let mut p = Vec::with_capacity(16 + 16 * self.entries.len());
        p.extend_from_slice(h.as_bytes());
        for e in &self.entries {
            p.extend_from_slice(e.as_bytes());
        }
        encode_file(FileKind::Deletions, index_id, &p)
    }

    /// Decodes and checks the order a reader's look-ups rely on.
    pub fn decode(file: &str, bytes: &[u8]) -> Result<(Self, FileHeader), FormatError> {
        let (fh, payload) = decode_file(file, FileKind::Deletions, bytes)?;
        let mut c = Cursor::new(file, payload, HEADER_LEN as u64);
        let h: DeletionsHeader = c.read("deletion set header")?;
        let n = h.count.get();
        if h.reserved.get() != 0 {
            return Err(c.invalid("deletion set header", "reserved field is not zero".into()));
        }
        let len = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(16))
            .ok_or_else(|| c.invalid("deletion set header", format!("{n} entries overflow")))?;
        let at = c.offset();
        let raw = c.take(len, "deletion entries")?;
        c.finish()?;
        let entries: Vec<Deleted> =
            raw.chunks_exact(16).map(|b| Deleted::read_from_bytes(b).unwrap_or_else(|_| unreachable!())).collect();
        if let Some(i) = entries.windows(2).position(|w| w[0].key() >= w[1].key()) {
            return Err(FormatError::Invalid {
                file: file.into(),
                what: "deletion entries".into(),
                offset: at + 16 * (i as u64 + 1),
                reason: "not in ascending (id, generation, list) order".into(),
            });
        }
        if let Some(i) = entries.iter().position(|e| e.generation.get() == 0) {
            return Err(FormatError::Invalid {
                file: file.into(),
                what: "deletion entries".into(),
                offset: at + 16 * i as u64,
                reason: "generation 0 deletes nothing".into(),
            });
        }
        Ok((Deletions { entries }, fh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Deletions {
        Deletions::new(vec![Deleted::new(9, 3, 1), Deleted::new(2, 2, 7), Deleted::new(9, 2, 4), Deleted::new(2, 2, 7)])
    }

    #[test]
    fn round_trip() {
        let d = sample();
        assert_eq!(d.entries.len(), 3, "repeats collapse");
        assert_eq!(d.entries[0], Deleted::new(2, 2, 7));
        let (back, h) = Deletions::decode("deleted", &d.encode([5; 16])).unwrap();
        assert_eq!(back, d);
        assert_eq!(h.index_id, [5; 16]);
        assert_eq!(std::mem::size_of::<DeletionsHeader>(), 16);
        assert_eq!(std::mem::size_of::<Deleted>(), 16);
        let empty = Deletions::default();
        assert_eq!(Deletions::decode("deleted", &empty.encode([5; 16])).unwrap().0, empty);
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = sample().encode([5; 16]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Deletions::decode("deleted", &b).is_err(), "flip at {i}");
        }
        assert!(matches!(Deletions::decode("deleted", &bytes[..bytes.len() - 3]), Err(FormatError::Truncated { .. })));
        // Well-formed bytes out of order are refused too (the checksum is recomputed here).
        let mut d = sample();
        d.entries.swap(0, 1);
        let unordered = encode_file(FileKind::Deletions, [5; 16], &d.encode([5; 16])[HEADER_LEN..]);
        let e = Deletions::decode("deleted", &unordered).unwrap_err().to_string();
        assert!(e.contains("ascending"), "{e}");
    }
}
