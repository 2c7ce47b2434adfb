//! The codebooks file: PQ centroids, shape (m, ksub, dsub).

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{decode_file, encode_file, f32s_from_le, put_f32s, Cursor, FileHeader, FileKind, FormatError, HEADER_LEN};

/// Fixed part of the codebooks payload, 16 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CodebookHeader {
    pub m: U32,
    pub ksub: U32,
    pub dsub: U32,
    pub nbits: U32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Codebooks {
    pub m: u32,
    pub ksub: u32,
    pub dsub: u32,
    pub nbits: u32,
    /// m × ksub × dsub.
    pub centroids: Vec<f32>,
}

impl Codebooks {
    pub fn encode(&self, index_id: [u8; 16]) -> Vec<u8> {
        let h = CodebookHeader {
            m: self.m.into(),
            ksub: self.ksub.into(),
            dsub: self.dsub.into(),
            nbits: self.nbits.into(),
        };
        let mut p = h.as_bytes().to_vec();
        put_f32s(&mut p, &self.centroids);
        encode_file(FileKind::Codebooks, index_id, &p)
    }

    pub fn decode(file: &str, bytes: &[u8]) -> Result<(Self, FileHeader), FormatError> {
        let (fh, payload) = decode_file(file, FileKind::Codebooks, bytes)?;
        let mut c = Cursor::new(file, payload, HEADER_LEN as u64);
        let h: CodebookHeader = c.read("codebook header")?;
        let (m, ksub, dsub) = (h.m.get() as usize, h.ksub.get() as usize, h.dsub.get() as usize);
        let nbits = h.nbits.get();
        if !matches!((nbits, ksub), (8, 256) | (4, 16)) {
            return Err(c.invalid(
                "codebook header",
                format!("nbits {nbits} / ksub {ksub}: only 8-bit (256) and 4-bit (16) PQ are defined"),
            ));
        }
        let n = m.checked_mul(ksub).and_then(|v| v.checked_mul(dsub)).and_then(|v| v.checked_mul(4));
        let n = n.ok_or_else(|| c.invalid("codebook header", "shape overflows".into()))?;
        let centroids = f32s_from_le(c.take(n, "PQ centroids")?);
        c.finish()?;
        Ok((Codebooks { m: m as u32, ksub: ksub as u32, dsub: dsub as u32, nbits, centroids }, fh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let cb = Codebooks { m: 2, ksub: 256, dsub: 1, nbits: 8, centroids: (0..512).map(|i| i as f32).collect() };
        let bytes = cb.encode([1; 16]);
        assert_eq!(Codebooks::decode("c", &bytes).unwrap().0, cb);
        let mut b = bytes.clone();
        b[200] ^= 4;
        assert!(matches!(Codebooks::decode("c", &b), Err(FormatError::ChecksumMismatch { .. })));
        let four = Codebooks { m: 2, ksub: 16, dsub: 3, nbits: 4, centroids: (0..96).map(|i| i as f32).collect() };
        assert_eq!(Codebooks::decode("c", &four.encode([1; 16])).unwrap().0, four);
        let odd = Codebooks { ksub: 256, ..four };
        assert!(matches!(Codebooks::decode("c", &odd.encode([1; 16])), Err(FormatError::Invalid { .. })));
    }
}
