//! The build state: the first file a build writes into its staging area. It records what the
//! finished index will be (the manifest's parameters) and everything else that shapes its
//! bytes, so that `--resume` continues only the build it belongs to, with the same options.
//!
//! Layout: [`FileHeader`](super::FileHeader) (kind 7) · [`BuildStateBody`] · `tmp_dir_len`
//! bytes of the UTF-8 path where the runs live (empty: in the staging area).

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{decode_file, encode_file, Cursor, FileKind, FormatError, Params, HEADER_LEN};

/// 168 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BuildStateBody {
    /// The parameter block the manifest will carry.
    pub params: Params,
    /// CRC-32C of the input's first and last rows as float32, with its shape: tells a
    /// different input apart without reading it all.
    pub input_fingerprint: U32,
    /// The input's element type (0 float32, 1 uint8, 2 int8, 3 float16, 4 int32).
    pub input_elem: u8,
    /// 1 when the coarse k-means runs in two levels.
    pub two_level: u8,
    pub reserved0: [u8; 2],
    pub segment_bytes: U64,
    /// Most vectors per extent (from the memory budget): longer lists are split.
    pub max_extent_vectors: U64,
    /// The memory budget the build was started with.
    pub memory_budget: U64,
    pub tmp_dir_len: U32,
    pub reserved: [u8; 4],
}

/// A decoded build state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildState {
    pub body: BuildStateBody,
    /// Where the runs are written; `None`: in the staging area.
    pub tmp_dir: Option<String>,
}

impl BuildState {
    pub fn encode(&self, index_id: [u8; 16]) -> Vec<u8> {
        let path = self.tmp_dir.as_deref().unwrap_or("");
        let mut body = self.body;
        body.tmp_dir_len = (path.len() as u32).into();
        let mut payload = body.as_bytes().to_vec();
        payload.extend_from_slice(path.as_bytes());
        encode_file(FileKind::BuildState, index_id, &payload)
    }

    pub fn decode(file: &str, bytes: &[u8]) -> Result<(BuildState, super::FileHeader), FormatError> {
        let (h, payload) = decode_file(file, FileKind::BuildState, bytes)?;
        let mut c = Cursor::new(file, payload, HEADER_LEN as u64);
        let body: BuildStateBody = c.read("build state")?;
        let at = c.offset();
        let path = c.take(body.tmp_dir_len.get() as usize, "temporary directory")?;
        let path = std::str::from_utf8(path).map_err(|_| FormatError::Invalid {
            file: file.into(),
            what: "temporary directory".into(),
            offset: at,
            reason: "not UTF-8".into(),
        })?;
        c.finish()?;
        let tmp_dir = (!path.is_empty()).then(|| path.to_string());
        Ok((BuildState { body, tmp_dir }, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn sample() -> BuildState {
        let mut body = BuildStateBody::new_zeroed();
        body.params.nlist = 4096.into();
        body.params.ntotal = 1_000_000.into();
        body.input_fingerprint = 0xdead_beef.into();
        body.segment_bytes = (1u64 << 30).into();
        BuildState { body, tmp_dir: Some("/mnt/scratch".into()) }
    }

    #[test]
    fn round_trip() {
        for s in [sample(), BuildState { tmp_dir: None, ..sample() }] {
            let bytes = s.encode([3; 16]);
            let (back, h) = BuildState::decode("build.qvb", &bytes).unwrap();
            assert_eq!(h.index_id, [3; 16]);
            assert_eq!(back.tmp_dir, s.tmp_dir);
            assert_eq!(back.body.params, s.body.params);
            assert_eq!(back.body.input_fingerprint, s.body.input_fingerprint);
        }
    }

    #[test]
    fn every_flipped_byte_and_a_cut_are_detected() {
        let bytes = sample().encode([3; 16]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(BuildState::decode("build.qvb", &b).is_err(), "flip at {i} undetected");
        }
        assert!(BuildState::decode("build.qvb", &bytes[..bytes.len() - 1]).is_err());
    }
}
