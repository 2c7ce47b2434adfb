//! The quantizer file: coarse centroids and the HNSW adjacency over them.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{
    decode_file, f32s_from_le, finish_file, put_f32s, put_u32s, u32s_from_le, Cursor, FileHeader, FileKind,
    FormatError, HEADER_LEN,
};

/// Fixed part of the quantizer payload, 32 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct QuantizerHeader {
    pub nlist: U32,
    pub dim: U32,
    pub hnsw_m: U32,
    pub entry_point: U32,
    pub max_level: U32,
    pub reserved: U32,
    pub n_slots: U64,
}

/// Decoded contents. Shapes: `centroids` nlist × dim; `levels` nlist; `neighbors` n_slots, node
/// by node, `2·M + level·M` slots each, `0xFFFFFFFF` for an unused slot.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizerBlock {
    pub dim: u32,
    pub hnsw_m: u32,
    pub entry_point: u32,
    pub centroids: Vec<f32>,
    pub levels: Vec<u8>,
    pub neighbors: Vec<u32>,
}

impl QuantizerBlock {
    pub fn nlist(&self) -> usize {
        self.levels.len()
    }

    pub fn encode(&self, index_id: [u8; 16]) -> Vec<u8> {
        let h = QuantizerHeader {
            nlist: (self.nlist() as u32).into(),
            dim: self.dim.into(),
            hnsw_m: self.hnsw_m.into(),
            entry_point: self.entry_point.into(),
            max_level: (self.levels.iter().copied().max().unwrap_or(0) as u32).into(),
            reserved: 0.into(),
            n_slots: (self.neighbors.len() as u64).into(),
        };
        let size = HEADER_LEN + 32 + self.centroids.len() * 4 + self.levels.len() + 3 + self.neighbors.len() * 4;
        let mut p = Vec::with_capacity(size);
        p.resize(HEADER_LEN, 0);
        p.extend_from_slice(h.as_bytes());
        put_f32s(&mut p, &self.centroids);
        p.extend_from_slice(&self.levels);
        p.resize(HEADER_LEN + (p.len() - HEADER_LEN).next_multiple_of(4), 0);
        put_u32s(&mut p, &self.neighbors);
        finish_file(FileKind::Quantizer, index_id, p)
    }

    /// Decodes and checks shapes; graph invariants are checked by the HNSW when it is rebuilt.
    pub fn decode(file: &str, bytes: &[u8]) -> Result<(Self, FileHeader), FormatError> {
        let (fh, payload) = decode_file(file, FileKind::Quantizer, bytes)?;
        let mut c = Cursor::new(file, payload, HEADER_LEN as u64);
        let h: QuantizerHeader = c.read("quantizer header")?;
        let (nlist, dim) = (h.nlist.get() as usize, h.dim.get() as usize);
        let n_cent = nlist.checked_mul(dim).and_then(|v| v.checked_mul(4));
        let n_cent =
            n_cent.ok_or_else(|| c.invalid("quantizer header", format!("nlist {nlist} × dim {dim} overflows")))?;
        let centroids = f32s_from_le(c.take(n_cent, "centroids")?);
        let levels = c.take(nlist, "HNSW levels")?.to_vec();
        c.align(4, "level padding")?;
        let n_slots = usize::try_from(h.n_slots.get()).unwrap_or(usize::MAX);
        let neighbors = u32s_from_le(c.take(n_slots.saturating_mul(4), "HNSW neighbours")?);
        c.finish()?;
        if levels.iter().copied().max().unwrap_or(0) as u32 != h.max_level.get() {
            return Err(c.invalid("quantizer header", "max_level disagrees with the stored levels".into()));
        }
        Ok((
            QuantizerBlock {
                dim: dim as u32,
                hnsw_m: h.hnsw_m.get(),
                entry_point: h.entry_point.get(),
                centroids,
                levels,
                neighbors,
            },
            fh,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QuantizerBlock {
        QuantizerBlock {
            dim: 2,
            hnsw_m: 1,
            entry_point: 1,
            centroids: vec![0.0, 1.0, 2.5, -3.0, 4.0, 5.0],
            levels: vec![0, 1, 0],
            neighbors: vec![1, u32::MAX, 0, 2, 0, 2, 1],
        }
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let (d, h) = QuantizerBlock::decode("q", &b.encode([9; 16])).unwrap();
        assert_eq!((d, h.index_id), (b, [9; 16]));
    }

    #[test]
    fn corruption_and_truncation_are_errors() {
        let bytes = sample().encode([0; 16]);
        let mut b = bytes.clone();
        b[HEADER_LEN + 40] ^= 0xff;
        assert!(matches!(QuantizerBlock::decode("q", &b), Err(FormatError::ChecksumMismatch { .. })));
        assert!(matches!(QuantizerBlock::decode("q", &bytes[..bytes.len() - 4]), Err(FormatError::Truncated { .. })));
    }
}
