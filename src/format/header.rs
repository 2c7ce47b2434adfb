//! The 64-byte header at offset 0 of every quiver file.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{check_version, crc32c, FormatError, FORMAT_MAJOR, FORMAT_MINOR, MAGIC};

pub const HEADER_LEN: usize = 64;

/// What a file holds. Stored as a u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FileKind {
    Manifest = 1,
    Quantizer = 2,
    Codebooks = 3,
    Directory = 4,
    Segment = 5,
    /// A sorted run in a build's staging area (not part of an index).
    Run = 6,
    /// The state of a build in progress (not part of an index).
    BuildState = 7,
    /// Full vectors for re-ranking (`,RFlat`), beside a segment (format 1.2).
    Vectors = 8,
    /// The HNSW graph over every vector (`HNSW{M},Flat`, format 1.3).
    Graph = 9,
    /// The deletion set of a generation (format 1.4).
    Deletions = 10,
}

impl FileKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => FileKind::Manifest,
            2 => FileKind::Quantizer,
            3 => FileKind::Codebooks,
            4 => FileKind::Directory,
            5 => FileKind::Segment,
            6 => FileKind::Run,
            7 => FileKind::BuildState,
            8 => FileKind::Vectors,
            9 => FileKind::Graph,
            10 => FileKind::Deletions,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Manifest => "manifest",
            FileKind::Quantizer => "quantizer",
            FileKind::Codebooks => "codebooks",
            FileKind::Directory => "list directory",
            FileKind::Segment => "segment",
            FileKind::Run => "sorted run",
            FileKind::BuildState => "build state",
            FileKind::Vectors => "vectors",
            FileKind::Graph => "graph",
            FileKind::Deletions => "deletion set",
        }
    }
}

/// Common file header. `header_crc` covers bytes 0..60; `payload_crc` covers
/// `payload_len` bytes starting at `payload_offset`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct FileHeader {
    pub magic: [u8; 8],
    pub kind: U32,
    pub format_major: U16,
    pub format_minor: U16,
    pub index_id: [u8; 16],
    pub payload_offset: U64,
    pub payload_len: U64,
    pub payload_crc: U32,
    pub reserved: [u8; 8],
    pub header_crc: U32,
}

impl FileHeader {
    pub fn new(kind: FileKind, index_id: [u8; 16], payload_offset: u64, payload: &[u8]) -> Self {
        Self::with_crc(kind, index_id, payload_offset, payload.len() as u64, crc32c(payload))
    }

    pub fn with_crc(
        kind: FileKind,
        index_id: [u8; 16],
        payload_offset: u64,
        payload_len: u64,
        payload_crc: u32,
    ) -> Self {
        let mut h = FileHeader {
            magic: MAGIC,
            kind: (kind as u32).into(),
            format_major: FORMAT_MAJOR.into(),
            format_minor: FORMAT_MINOR.into(),
            index_id,
            payload_offset: payload_offset.into(),
            payload_len: payload_len.into(),
            payload_crc: payload_crc.into(),
            reserved: [0; 8],
            header_crc: 0.into(),
        };
        h.header_crc = crc32c(&h.as_bytes()[..HEADER_LEN - 4]).into();
        h
    }

    /// Parses and checks magic, header checksum, version and kind, in that order (so a foreign
    /// file says "not a quiver file", not "checksum mismatch").
    pub fn decode(file: &str, expected: FileKind, bytes: &[u8]) -> Result<Self, FormatError> {
        let Ok((h, _)) = FileHeader::read_from_prefix(bytes) else {
            return Err(FormatError::Truncated {
                file: file.into(),
                what: "file header".into(),
                offset: 0,
                needed: HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        };
        if h.magic != MAGIC {
            return Err(FormatError::BadMagic { file: file.into(), found: h.magic });
        }
        let computed = crc32c(&bytes[..HEADER_LEN - 4]);
        if computed != h.header_crc.get() {
            return Err(FormatError::ChecksumMismatch {
                file: file.into(),
                what: "file header".into(),
                offset: 0,
                len: HEADER_LEN as u64,
                stored: h.header_crc.get(),
                computed,
            });
        }
        check_version(file, h.format_major.get(), h.format_minor.get())?;
        if h.kind.get() != expected as u32 {
            let found =
                FileKind::from_u32(h.kind.get()).map_or(format!("unknown ({})", h.kind.get()), |k| k.name().into());
            return Err(FormatError::WrongKind { file: file.into(), expected: expected.name().into(), found });
        }
        Ok(h)
    }
}

/// Completes a small file assembled in place: `buf` holds `HEADER_LEN` bytes of room followed
/// by the payload; the header is written into the room. Large files (the quantizer at 2^20
/// lists is hundreds of MB) are encoded without a second copy this way.
pub fn finish_file(kind: FileKind, index_id: [u8; 16], mut buf: Vec<u8>) -> Vec<u8> {
    let h = FileHeader::new(kind, index_id, HEADER_LEN as u64, &buf[HEADER_LEN..]);
    buf[..HEADER_LEN].copy_from_slice(h.as_bytes());
    buf
}

/// A whole small file: header then payload.
pub fn encode_file(kind: FileKind, index_id: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(FileHeader::new(kind, index_id, HEADER_LEN as u64, payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Verifies a whole small file and returns its header and payload.
pub fn decode_file<'a>(file: &str, kind: FileKind, bytes: &'a [u8]) -> Result<(FileHeader, &'a [u8]), FormatError> {
    let h = FileHeader::decode(file, kind, bytes)?;
    let (off, len) = (h.payload_offset.get(), h.payload_len.get());
    let end = off.checked_add(len);
    if off != HEADER_LEN as u64 || end.is_none() {
        return Err(FormatError::Invalid {
            file: file.into(),
            what: "file header".into(),
            offset: 0,
            reason: format!("payload at {off} (+{len}) is not where a {} file keeps it", kind.name()),
        });
    }
    if end != Some(bytes.len() as u64) {
        return Err(FormatError::Truncated {
            file: file.into(),
            what: "payload".into(),
            offset: off,
            needed: len,
            available: (bytes.len() as u64).saturating_sub(off),
        });
    }
    let payload = &bytes[HEADER_LEN..];
    let computed = crc32c(payload);
    if computed != h.payload_crc.get() {
        return Err(FormatError::ChecksumMismatch {
            file: file.into(),
            what: "payload".into(),
            offset: off,
            len,
            stored: h.payload_crc.get(),
            computed,
        });
    }
    Ok((h, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode_file(FileKind::Codebooks, [7; 16], b"hello payload");
        let (h, p) = decode_file("x", FileKind::Codebooks, &bytes).unwrap();
        assert_eq!(p, b"hello payload");
        assert_eq!(h.index_id, [7; 16]);
        assert_eq!(std::mem::size_of::<FileHeader>(), HEADER_LEN);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = encode_file(FileKind::Codebooks, [7; 16], b"hello payload");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode_file("x", FileKind::Codebooks, &b).is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn truncation_foreign_kind_and_future_version_are_typed_errors() {
        let bytes = encode_file(FileKind::Codebooks, [0; 16], b"abc");
        assert!(matches!(decode_file("x", FileKind::Codebooks, &bytes[..10]), Err(FormatError::Truncated { .. })));
        assert!(matches!(decode_file("x", FileKind::Codebooks, &bytes[..66]), Err(FormatError::Truncated { .. })));
        assert!(matches!(decode_file("x", FileKind::Quantizer, &bytes), Err(FormatError::WrongKind { .. })));
        let mut zip = b"PK\x03\x04".to_vec();
        zip.resize(100, b'z');
        assert!(matches!(decode_file("x", FileKind::Codebooks, &zip), Err(FormatError::BadMagic { .. })));
        let mut h = FileHeader::new(FileKind::Codebooks, [0; 16], 64, b"abc");
        h.format_minor = (FORMAT_MINOR + 1).into();
        h.header_crc = crc32c(&h.as_bytes()[..60]).into();
        let mut b = h.as_bytes().to_vec();
        b.extend_from_slice(b"abc");
        assert!(matches!(decode_file("x", FileKind::Codebooks, &b), Err(FormatError::UnsupportedVersion { .. })));
    }
}
