//! Integrity walk and description of an open index: every segment's payload checksum, every
//! extent's checksum, id ranges, and list-size statistics.

use std::os::unix::fs::FileExt;

use crate::error::{Error, IoContext, Result};
use crate::format::{self, PAGE};
use crate::search::Index;

/// What `verify` checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub files: usize,
    pub segments: usize,
    pub extents: u64,
    pub vectors: u64,
    pub bytes: u64,
}

/// List sizes of an index, for `inspect`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListStats {
    pub nlist: usize,
    pub empty: usize,
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    /// Imbalance factor as faiss defines it: nlist · Σ size² / (Σ size)².
    pub imbalance: f64,
    /// Quantiles p50, p90, p99 of the list sizes.
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
}

impl Index {
    /// Reads every byte of every segment: recomputes each segment's payload checksum and each
    /// extent's, and checks that every id is below ntotal and appears once.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report =
            VerifyReport { files: self.files.len() + 1, segments: self.segments.len(), ..Default::default() };
        let mut buf = vec![0u8; 8 << 20];
        // Buffered handles, opened once: O_DIRECT would need aligned buffers and gains nothing here.
        let mut files = Vec::with_capacity(self.segments.len());
        for seg in &self.segments {
            let path = self.dir().join(&seg.name);
            let f = std::fs::File::open(&path).at(&path)?;
            let mut crc = 0u32;
            let mut off = PAGE;
            while off < seg.size {
                let n = ((seg.size - off) as usize).min(buf.len());
                f.read_exact_at(&mut buf[..n], off).at(&path)?;
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                off += n as u64;
            }
            let stored = self.files.iter().find(|e| e.name() == seg.name).map(|e| e.crc.get()).unwrap_or_default();
            if crc != stored {
                return Err(format::FormatError::ChecksumMismatch {
                    file: seg.name.clone(),
                    what: "extent area".into(),
                    offset: PAGE,
                    len: seg.size - PAGE,
                    stored,
                    computed: crc,
                }
                .into());
            }
            report.bytes += seg.size;
            files.push(f);
        }
        let mut seen = vec![false; self.info().ntotal as usize];
        for list in 0..self.info().nlist {
            for e in self.directory.extents_of(list) {
                let no = e.segment.get() as usize;
                let seg = &self.segments[no];
                // Lengths were checked against the segment sizes at open, so this is bounded.
                let len = e.length.get() as usize;
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                let bytes = &mut buf[..len];
                files[no].read_exact_at(bytes, e.offset.get()).at(self.dir().join(&seg.name))?;
                let view = format::decode_extent(&seg.name, e, self.pq.code_size(), bytes)?;
                for id in view.ids() {
                    match seen.get_mut(id as usize) {
                        Some(s) if !*s => *s = true,
                        _ => {
                            return Err(Error::Corrupt {
                                file: seg.name.clone(),
                                reason: format!("list {list}: id {id} is out of range or repeated"),
                            })
                        }
                    }
                }
                report.extents += 1;
                report.vectors += e.count.get() as u64;
            }
        }
        Ok(report)
    }

    /// List-size statistics.
    pub fn list_stats(&self) -> ListStats {
        let nlist = self.info().nlist;
        let mut sizes: Vec<u64> = (0..nlist).map(|l| self.list_len(l)).collect();
        sizes.sort_unstable();
        let total: u64 = sizes.iter().sum();
        let sq: f64 = sizes.iter().map(|&s| (s as f64) * (s as f64)).sum();
        let q = |p: f64| sizes[((nlist as f64 - 1.0) * p).round() as usize];
        ListStats {
            nlist,
            empty: sizes.iter().filter(|&&s| s == 0).count(),
            min: sizes[0],
            max: sizes[nlist - 1],
            mean: total as f64 / nlist as f64,
            imbalance: if total > 0 { nlist as f64 * sq / (total as f64 * total as f64) } else { 0.0 },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
        }
    }

    /// The index's files as (name, kind, bytes).
    pub fn files(&self) -> Vec<(String, &'static str, u64)> {
        self.files
            .iter()
            .map(|f| (f.name(), format::FileKind::from_u32(f.kind.get()).map_or("?", |k| k.name()), f.size.get()))
            .collect()
    }
}
