//! The manifest: written last, atomically, it is the commit point of an index. It holds the
//! parameter block and names every other file with its size and payload checksum.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{decode_file, encode_file, Cursor, FileKind, FormatError, HEADER_LEN};

/// Bytes of a file name in a [`FileEntry`], zero-padded.
pub const FILE_NAME_LEN: usize = 40;

/// Build parameters, 128 bytes. `factory` is the canonical factory string, zero-padded.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Params {
    pub dim: U32,
    pub metric: u8,
    pub code_layout: u8,
    /// 1: codes quantize the vectors themselves (faiss's `by_residual = false`, `PQ{m}x4fs`);
    /// 0: their residuals from the list's centroid (every index of format 1.0).
    pub raw_codes: u8,
    /// Full vectors kept for re-ranking: 0 none, [`super::REFINE_F32`], [`super::REFINE_U8`].
    pub refine: u8,
    pub nlist: U32,
    pub pq_m: U32,
    pub pq_nbits: U32,
    pub hnsw_m: U32,
    pub ef_construction: U32,
    pub ef_search: U32,
    pub niter: U32,
    pub reserved1: U32,
    pub ntotal: U64,
    pub seed: U64,
    pub train_size: U64,
    pub factory: [u8; 64],
}

/// Fixed part of the manifest payload, 160 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ManifestBody {
    pub generation: U64,
    pub params: Params,
    pub n_files: U32,
    /// Format 1.4: one more than the largest id ever assigned, so an id once deleted is never
    /// handed out again; 0 in older manifests, whose ids are 0 .. ntotal.
    pub next_id: U64,
    /// Format 1.4: entries of the deletion set (deleted vectors still in the lists).
    pub deleted: U64,
    pub reserved: [u8; 4],
}

impl ManifestBody {
    /// Generation 1 of a freshly built index: ids 0 .. ntotal, nothing deleted.
    pub fn first(params: Params) -> Self {
        ManifestBody {
            generation: 1.into(),
            params,
            n_files: 0.into(),
            next_id: params.ntotal,
            deleted: 0.into(),
            reserved: [0; 4],
        }
    }

    /// The id an addition without ids starts from.
    pub fn next_id(&self) -> u64 {
        match self.next_id.get() {
            0 => self.params.ntotal.get(),
            n => n,
        }
    }
}

/// One file of the index, 64 bytes. `crc` is the file's payload crc32c (the value its own
/// header carries), so a file swapped in from another build is caught on open.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct FileEntry {
    pub name: [u8; FILE_NAME_LEN],
    pub kind: U32,
    /// Format 1.4: the generation that wrote the file (0 in older manifests: generation 1).
    pub generation: U32,
    pub size: U64,
    pub crc: U32,
    pub reserved2: U32,
}

impl FileEntry {
    pub fn new(name: &str, kind: FileKind, size: u64, crc: u32) -> Self {
        let mut n = [0u8; FILE_NAME_LEN];
        n[..name.len()].copy_from_slice(name.as_bytes());
        FileEntry {
            name: n,
            kind: (kind as u32).into(),
            generation: 0.into(),
            size: size.into(),
            crc: crc.into(),
            reserved2: 0.into(),
        }
    }

    /// The same entry, recording that generation `g` wrote the file.
    pub fn written_by(mut self, g: u64) -> Self {
        self.generation = (g.min(u32::MAX as u64) as u32).into();
        self
    }

    /// The generation that wrote the file.
    pub fn generation(&self) -> u32 {
        self.generation.get().max(1)
    }

    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(FILE_NAME_LEN);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub index_id: [u8; 16],
    pub body: ManifestBody,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = self.body;
        body.n_files = (self.files.len() as u32).into();
        let mut payload = body.as_bytes().to_vec();
        for f in &self.files {
            payload.extend_from_slice(f.as_bytes());
        }
        encode_file(FileKind::Manifest, self.index_id, &payload)
    }

    pub fn decode(file: &str, bytes: &[u8]) -> Result<Self, FormatError> {
        let (h, payload) = decode_file(file, FileKind::Manifest, bytes)?;
        let mut c = Cursor::new(file, payload, HEADER_LEN as u64);
        let body: ManifestBody = c.read("manifest body")?;
        let n = body.n_files.get() as usize;
        if n > payload.len() / std::mem::size_of::<FileEntry>() {
            return Err(c.invalid("file count", format!("{n} files cannot fit in {} bytes", payload.len())));
        }
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            let e: FileEntry = c.read("file entry")?;
            if FileKind::from_u32(e.kind.get()).is_none() || e.name().is_empty() || e.name().contains('/') {
                return Err(c.invalid("file entry", format!("bad entry {:?} (kind {})", e.name(), e.kind.get())));
            }
            files.push(e);
        }
        c.finish()?;
        Ok(Manifest { index_id: h.index_id, body, files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut factory = [0u8; 64];
        factory[..19].copy_from_slice(b"IVF4096_HNSW32,PQ32");
        let params = Params {
            dim: 128.into(),
            metric: 0,
            code_layout: 1,
            raw_codes: 0,
            refine: 0,
            nlist: 4096.into(),
            pq_m: 32.into(),
            pq_nbits: 8.into(),
            hnsw_m: 32.into(),
            ef_construction: 40.into(),
            ef_search: 16.into(),
            niter: 10.into(),
            reserved1: 0.into(),
            ntotal: 1_000_000.into(),
            seed: 1.into(),
            train_size: 163_840.into(),
            factory,
        };
        Manifest {
            index_id: [3; 16],
            body: ManifestBody {
                generation: 1.into(),
                params,
                n_files: 0.into(),
                next_id: 0.into(),
                deleted: 0.into(),
                reserved: [0; 4],
            },
            files: vec![FileEntry::new("seg-000000.qseg", FileKind::Segment, 8192, 0xdead_beef)],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let mut want = m.clone();
        want.body.n_files = 1.into();
        assert_eq!(Manifest::decode("MANIFEST", &m.encode()).unwrap(), want);
        assert_eq!(std::mem::size_of::<Params>(), 128);
        assert_eq!(std::mem::size_of::<ManifestBody>(), 160);
        assert_eq!(std::mem::size_of::<FileEntry>(), 64);
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = sample().encode();
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(Manifest::decode("MANIFEST", &b).is_err(), "flip at {i}");
        }
        assert!(matches!(Manifest::decode("MANIFEST", &bytes[..100]), Err(FormatError::Truncated { .. })));
    }
}
