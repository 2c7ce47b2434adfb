//! User vector files: texmex `fvecs/bvecs/ivecs`, big-ann-benchmarks `fbin/u8bin/i8bin/ibin`
//! and NumPy `.npy` (C order, 2-d; float32, uint8, int8, int32). The format is chosen by the
//! extension. Rows are read by position, in batches, so a 10^9-row file streams through bounded
//! memory. Every error names the file and, where it applies, the row.

mod npy;
mod write;

pub use write::{Contents, VectorWriter};

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What a bad input file looks like, in words the user can act on.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: unknown vector file extension {ext:?}: use .fvecs, .bvecs, .ivecs, .fbin, .u8bin, .i8bin, .ibin or .npy")]
    UnknownFormat { path: PathBuf, ext: String },
    #[error("{path}: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}: file size {size} is not a whole number of rows ({detail}); the file is truncated or not in this format")]
    Truncated { path: PathBuf, size: u64, detail: String },
    #[error("{path}: row {row} has dimension {found}, expected {expected}")]
    DimensionMismatch { path: PathBuf, row: u64, found: i64, expected: usize },
    #[error("{path}: row {row}, component {col} is {value} (NaN and infinity cannot be indexed)")]
    NonFinite { path: PathBuf, row: u64, col: usize, value: f32 },
    #[error("{path}: the file holds no vectors")]
    Empty { path: PathBuf },
    #[error("{path}: holds {found} values, expected {expected}")]
    WrongType { path: PathBuf, expected: &'static str, found: &'static str },
    #[error("{path}: {what} needs {bytes} bytes of memory, which this machine cannot allocate; {hint}")]
    TooLarge { path: PathBuf, what: String, bytes: u64, hint: &'static str },
}

/// Largest dimension quiver reads or writes: 65,536 components, past every embedding model's
/// width. A header declaring more is damage or a different format, and refusing it here keeps
/// a bad header from turning into an impossible allocation later.
pub const MAX_DIM: usize = 1 << 16;

/// Reserves room for `additional` more elements, or returns [`InputError::TooLarge`] where that
/// is more than the machine's memory or the allocator refuses, instead of aborting.
fn try_reserve<T>(
    v: &mut Vec<T>,
    additional: usize,
    path: &Path,
    what: &str,
    hint: &'static str,
) -> Result<(), InputError> {
    let bytes = (additional as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    if !crate::io::fits_in_memory(bytes) || v.try_reserve_exact(additional).is_err() {
        return Err(InputError::TooLarge { path: path.to_owned(), what: what.into(), bytes, hint });
    }
    Ok(())
}

fn check_dim(path: &Path, d: u64) -> Result<(), InputError> {
    if d == 0 || d > MAX_DIM as u64 {
        return Err(InputError::BadHeader {
            path: path.to_owned(),
            reason: format!("dimension {d} is outside 1 ..= {MAX_DIM}; is this a vector file of this format?"),
        });
    }
    Ok(())
}

/// Element type of a vector file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    /// IEEE-754 binary16 (`.npy` float16), widened to f32 on read.
    F16,
    U8,
    I8,
    I32,
    /// Ids in `.npy` (numpy's default integer): written by `search --out ids.npy`, read as
    /// ground truth where every value fits int32.
    I64,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::I64 => 8,
            Elem::F32 | Elem::I32 => 4,
            Elem::F16 => 2,
            Elem::U8 | Elem::I8 => 1,
        }
    }

    /// Whether values of this type are ids (integers) rather than vector components.
    pub fn is_id(self) -> bool {
        matches!(self, Elem::I32 | Elem::I64)
    }

    pub fn name(self) -> &'static str {
        match self {
            Elem::F32 => "float32",
            Elem::F16 => "float16",
            Elem::U8 => "uint8",
            Elem::I8 => "int8",
            Elem::I32 => "int32",
            Elem::I64 => "int64",
        }
    }
}

/// File layouts, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Each row prefixed by its dimension as an int32 (texmex).
    Vecs(Elem),
    /// int32 n, int32 d, then n × d values (big-ann-benchmarks).
    Bin(Elem),
    Npy,
}

impl Layout {
    pub fn from_path(path: &Path) -> Result<Layout, InputError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        Ok(match ext.as_str() {
            "fvecs" => Layout::Vecs(Elem::F32),
            "bvecs" => Layout::Vecs(Elem::U8),
            "ivecs" => Layout::Vecs(Elem::I32),
            "fbin" => Layout::Bin(Elem::F32),
            "u8bin" => Layout::Bin(Elem::U8),
            "i8bin" => Layout::Bin(Elem::I8),
            "ibin" => Layout::Bin(Elem::I32),
            "npy" => Layout::Npy,
            _ => return Err(InputError::UnknownFormat { path: path.to_owned(), ext }),
        })
    }
}

/// An open vector file: its shape, element type and where the rows are.
#[derive(Debug)]
pub struct VectorFile {
    path: PathBuf,
    file: File,
    layout: Layout,
    elem: Elem,
    dim: usize,
    n: usize,
    data_offset: u64,
    /// Bytes before each row's values (4 for texmex, 0 otherwise).
    row_prefix: usize,
}

impl VectorFile {
    /// Opens and checks the shape against the file size. An empty file is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, InputError> {
        let path = path.as_ref().to_owned();
        let layout = Layout::from_path(&path)?;
        let io = |source| InputError::Io { path: path.clone(), source };
        let file = File::open(&path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let (elem, dim, n, data_offset, row_prefix) = match layout {
            Layout::Vecs(elem) => {
                if size == 0 {
                    return Err(InputError::Empty { path });
                }
                let mut b = [0u8; 4];
                file.read_exact_at(&mut b, 0).map_err(|_| InputError::Truncated {
                    path: path.clone(),
                    size,
                    detail: "no dimension field".into(),
                })?;
                let d = i32::from_le_bytes(b);
                if d <= 0 || d as usize > MAX_DIM {
                    return Err(InputError::BadHeader {
                        path,
                        reason: format!(
                            "first row declares dimension {d}, outside 1 ..= {MAX_DIM}; not a {} file?",
                            ext_name(layout)
                        ),
                    });
                }
                let stride = 4 + d as u64 * elem.size() as u64;
                if size % stride != 0 {
                    return Err(InputError::Truncated {
                        path,
                        size,
                        detail: format!("{stride} bytes per row of dimension {d}"),
                    });
                }
                (elem, d as usize, (size / stride) as usize, 0, 4)
            }
            Layout::Bin(elem) => {
                let mut b = [0u8; 8];
                file.read_exact_at(&mut b, 0).map_err(|_| InputError::Truncated {
                    path: path.clone(),
                    size,
                    detail: "no 8-byte (n, d) header".into(),
                })?;
                let n = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let d = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                if n < 0 || d <= 0 {
                    return Err(InputError::BadHeader { path, reason: format!("header declares n = {n}, d = {d}") });
                }
                check_dim(&path, d as u64)?;
                let want = 8 + n as u64 * d as u64 * elem.size() as u64;
                if size != want {
                    return Err(InputError::Truncated {
                        path,
                        size,
                        detail: format!("header declares {n} × {d} {}, which needs {want} bytes", elem.name()),
                    });
                }
                (elem, d as usize, n as usize, 8, 0)
            }
            Layout::Npy => {
                let h = npy::read_header(&file, &path)?;
                check_dim(&path, h.d as u64)?;
                let want = (h.n as u64)
                    .checked_mul(h.d as u64 * h.elem.size() as u64)
                    .and_then(|b| b.checked_add(h.data_offset))
                    .unwrap_or(u64::MAX);
                if size != want {
                    return Err(InputError::Truncated {
                        path,
                        size,
                        detail: format!("shape ({}, {}) of {} needs {want} bytes", h.n, h.d, h.elem.name()),
                    });
                }
                (h.elem, h.d, h.n, h.data_offset, 0)
            }
        };
        if n == 0 {
            return Err(InputError::Empty { path });
        }
        Ok(VectorFile { path, file, layout, elem, dim, n, data_offset, row_prefix })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn elem(&self) -> Elem {
        self.elem
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn stride(&self) -> usize {
        self.row_prefix + self.dim * self.elem.size()
    }

    /// Calls `each` with the value bytes of every row in `start..start + count` (clipped to the
    /// file), per-row dimension prefixes checked and skipped. Reads in blocks of about 1 MiB
    /// through one reused buffer, so a chunk of the base never exists twice in memory.
    fn for_each_row(&self, start: usize, count: usize, mut each: impl FnMut(&[u8])) -> Result<(), InputError> {
        let count = count.min(self.n.saturating_sub(start));
        let stride = self.stride();
        let block = ((1usize << 20) / stride).max(1);
        let mut raw = vec![0u8; block.min(count) * stride];
        let mut row = start;
        while row < start + count {
            let rows = block.min(start + count - row);
            let buf = &mut raw[..rows * stride];
            self.file
                .read_exact_at(buf, self.data_offset + (row * stride) as u64)
                .map_err(|source| InputError::Io { path: self.path.clone(), source })?;
            for (i, r) in buf.chunks_exact(stride).enumerate() {
                if self.row_prefix > 0 {
                    let d = i32::from_le_bytes([r[0], r[1], r[2], r[3]]);
                    if d as i64 != self.dim as i64 {
                        return Err(InputError::DimensionMismatch {
                            path: self.path.clone(),
                            row: (row + i) as u64,
                            found: d as i64,
                            expected: self.dim,
                        });
                    }
                }
                each(&r[self.row_prefix..]);
            }
            row += rows;
        }
        Ok(())
    }

    /// Appends rows `start..start + count` (clipped to the file) to `out` as f32, and checks
    /// that every value is finite.
    pub fn read_f32(&self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        if self.elem.is_id() {
            return Err(InputError::WrongType {
                path: self.path.clone(),
                expected: "vectors (float32, uint8 or int8)",
                found: self.elem.name(),
            });
        }
        let first = out.len();
        let rows = count.min(self.n.saturating_sub(start));
        let what = format!("{rows} rows of dimension {} as float32", self.dim);
        try_reserve(out, rows * self.dim, &self.path, &what, "read fewer rows at a time")?;
        let elem = self.elem;
        self.for_each_row(start, count, |raw| match elem {
            Elem::F32 => out.extend(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Elem::F16 => out.extend(raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))),
            Elem::U8 => out.extend(raw.iter().map(|&b| b as f32)),
            Elem::I8 => out.extend(raw.iter().map(|&b| b as i8 as f32)),
            Elem::I32 | Elem::I64 => {}
        })?;
        if let Some(pos) = out[first..].iter().position(|v| !v.is_finite()) {
            return Err(InputError::NonFinite {
                path: self.path.clone(),
                row: (start + pos / self.dim) as u64,
                col: pos % self.dim,
                value: out[first + pos],
            });
        }
        Ok(())
    }

    /// Reads the whole file as f32 (for query sets; base files stream through `read_f32`).
    pub fn read_all_f32(&self) -> Result<Vec<f32>, InputError> {
        let mut v = Vec::new();
        self.read_f32(0, self.n, &mut v)?;
        Ok(v)
    }

    /// Reads the whole file as int32 rows (ground truth files: `.ivecs`, `.ibin`, `.npy` of
    /// int32, or of int64 whose values all fit int32).
    pub fn read_all_i32(&self) -> Result<Vec<i32>, InputError> {
        let wide = self.read_all_i64()?;
        match wide.iter().position(|&v| i32::try_from(v).is_err()) {
            Some(p) => Err(InputError::BadHeader {
                path: self.path.clone(),
                reason: format!(
                    "id {} (row {}) does not fit int32, which this reader needs",
                    wide[p],
                    p / self.dim.max(1)
                ),
            }),
            None => Ok(wide.into_iter().map(|v| v as i32).collect()),
        }
    }
}

impl VectorFile {
    /// Reads the whole file as int64 ids, row after row (`.ivecs`, `.ibin` or `.npy` of int32
    /// or int64): the ids of `add`, `delete` and filtered search.
    pub fn read_all_i64(&self) -> Result<Vec<i64>, InputError> {
        if !self.elem.is_id() {
            return Err(InputError::WrongType {
                path: self.path.clone(),
                expected: "int32 or int64 ids",
                found: self.elem.name(),
            });
        }
        let mut out = Vec::new();
        try_reserve(&mut out, self.n * self.dim, &self.path, "the ids as int64", "pass fewer ids at a time")?;
        self.for_each_row(0, self.n, |raw| match self.elem {
            Elem::I64 => {
                out.extend(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8"))))
            }
            _ => out.extend(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)),
        })?;
        Ok(out)
    }
}

/// IEEE-754 binary16 to binary32, exactly (every half is a float).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: normalise the mantissa.
            let shift = man.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | (((man << shift) & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        e => sign | ((e + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn ext_name(l: Layout) -> &'static str {
    match l {
        Layout::Vecs(Elem::F32) => "fvecs",
        Layout::Vecs(Elem::U8) => "bvecs",
        Layout::Vecs(_) => "ivecs",
        _ => "vector",
    }
}

/// Where the builder gets vectors: a file, or rows already in memory.
pub trait VectorSource: Sync {
    fn dim(&self) -> usize;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends rows `start..start + count` as f32; errors on non-finite values.
    fn read_f32(&self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<(), InputError>;
    /// The element type rows are stored in (what a training sample can be kept as).
    fn elem(&self) -> Elem {
        Elem::F32
    }
    /// Appends rows `start..start + count` as their stored uint8/int8 bytes (one per value);
    /// only for sources whose [`elem`](Self::elem) is `U8` or `I8`.
    fn read_bytes(&self, start: usize, count: usize, out: &mut Vec<u8>) -> Result<(), InputError> {
        let _ = (start, count, out);
        Err(InputError::WrongType {
            path: "<source>".into(),
            expected: "uint8 or int8 rows",
            found: self.elem().name(),
        })
    }
}

impl VectorSource for VectorFile {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.n
    }
    fn read_f32(&self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        VectorFile::read_f32(self, start, count, out)
    }
    fn elem(&self) -> Elem {
        self.elem
    }
    fn read_bytes(&self, start: usize, count: usize, out: &mut Vec<u8>) -> Result<(), InputError> {
        if !matches!(self.elem, Elem::U8 | Elem::I8) {
            return Err(InputError::WrongType {
                path: self.path.clone(),
                expected: "uint8 or int8 rows",
                found: self.elem.name(),
            });
        }
        let rows = count.min(self.n.saturating_sub(start));
        try_reserve(out, rows * self.dim, &self.path, "rows as bytes", "read fewer rows at a time")?;
        self.for_each_row(start, count, |raw| out.extend_from_slice(raw))
    }
}

/// Several files read as one dataset, rows in the order the files are given: the shards an
/// embedding pipeline writes. All have the same dimension and element type.
#[derive(Debug)]
pub struct VectorFiles {
    files: Vec<VectorFile>,
    /// Global row number of each file's first row, and the total at the end.
    starts: Vec<usize>,
}

impl VectorFiles {
    /// Opens every file and checks that they agree on dimension and element type (an error
    /// names the first shard that differs). An empty list is an error.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self, InputError> {
        let mut files: Vec<VectorFile> = Vec::with_capacity(paths.len());
        for p in paths {
            let f = VectorFile::open(p)?;
            if let Some(first) = files.first() {
                if f.dim != first.dim || f.elem != first.elem {
                    return Err(InputError::BadHeader {
                        path: f.path.clone(),
                        reason: format!(
                            "holds {}-dimensional {} rows, but {} holds {}-dimensional {}: every shard of one input must match",
                            f.dim,
                            f.elem.name(),
                            first.path.display(),
                            first.dim,
                            first.elem.name()
                        ),
                    });
                }
            }
            files.push(f);
        }
        if files.is_empty() {
            return Err(InputError::Empty { path: "<no input files>".into() });
        }
        let mut starts = vec![0];
        for f in &files {
            starts.push(starts[starts.len() - 1] + f.n);
        }
        Ok(VectorFiles { files, starts })
    }

    pub fn files(&self) -> &[VectorFile] {
        &self.files
    }

    /// Calls `each(file, start_in_file, count)` for the pieces of rows `start..start + count`.
    fn pieces(
        &self,
        start: usize,
        count: usize,
        mut each: impl FnMut(&VectorFile, usize, usize) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        let end = (start + count).min(self.len());
        let mut row = start;
        while row < end {
            let i = self.starts.partition_point(|&s| s <= row) - 1;
            let take = (end - row).min(self.starts[i + 1] - row);
            each(&self.files[i], row - self.starts[i], take)?;
            row += take;
        }
        Ok(())
    }
}

impl VectorSource for VectorFiles {
    fn dim(&self) -> usize {
        self.files[0].dim
    }
    fn len(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }
    fn read_f32(&self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        let first = out.len();
        self.pieces(start, count, |f, s, c| f.read_f32(s, c, out)).map_err(|e| match e {
            // Rows are numbered across the whole input, as the index's ids are.
            InputError::NonFinite { path, row, col, value } => {
                let file = self.files.iter().position(|f| f.path == path).unwrap_or(0);
                InputError::NonFinite { path, row: row + self.starts[file] as u64, col, value }
            }
            other => other,
        })?;
        debug_assert!(out.len() >= first);
        Ok(())
    }
    fn elem(&self) -> Elem {
        self.files[0].elem
    }
    fn read_bytes(&self, start: usize, count: usize, out: &mut Vec<u8>) -> Result<(), InputError> {
        self.pieces(start, count, |f, s, c| f.read_bytes(s, c, out))
    }
}

/// Rows held in memory, n × dim.
pub struct SliceSource<'a> {
    pub data: &'a [f32],
    pub dim: usize,
}

impl VectorSource for SliceSource<'_> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }
    fn read_f32(&self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        let end = (start + count).min(self.len());
        let rows = &self.data[start * self.dim..end * self.dim];
        if let Some(pos) = rows.iter().position(|v| !v.is_finite()) {
            return Err(InputError::NonFinite {
                path: "<memory>".into(),
                row: (start + pos / self.dim) as u64,
                col: pos % self.dim,
                value: rows[pos],
            });
        }
        out.extend_from_slice(rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<f32> {
        (0..30).map(|i| i as f32).collect()
    }

    /// Every writable format reads back the same values, by extension alone.
    #[test]
    fn formats_round_trip() {
        let d = tempfile::tempdir().unwrap();
        for ext in ["fvecs", "fbin", "bvecs", "u8bin", "i8bin", "npy"] {
            let p = d.path().join(format!("x.{ext}"));
            let mut w = VectorWriter::create(&p, 3).unwrap();
            w.write_f32(&rows()).unwrap();
            w.finish().unwrap();
            let f = VectorFile::open(&p).unwrap();
            assert_eq!((f.len(), f.dim()), (10, 3), "{ext}");
            let mut got = Vec::new();
            f.read_f32(2, 3, &mut got).unwrap();
            assert_eq!(got, rows()[6..15], "{ext}");
        }
        for ext in ["ivecs", "ibin"] {
            let p = d.path().join(format!("g.{ext}"));
            let mut w = VectorWriter::create(&p, 2).unwrap();
            w.write_i32(&[1, 2, 3, -1]).unwrap();
            w.finish().unwrap();
            assert_eq!(VectorFile::open(&p).unwrap().read_all_i32().unwrap(), vec![1, 2, 3, -1]);
        }
    }

    /// The target changes only when a writer finishes: an unfinished writer (an error or a full
    /// disk part-way) leaves the previous file intact and no temporary behind.
    #[test]
    fn writers_replace_the_target_only_when_finished() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("gt.ivecs");
        let mut w = VectorWriter::create(&p, 2).unwrap();
        w.write_i32(&[1, 2]).unwrap();
        w.finish().unwrap();
        let before = std::fs::read(&p).unwrap();
        let mut w = VectorWriter::create(&p, 2).unwrap();
        w.write_i32(&[3, 4, 5, 6]).unwrap();
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), before);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "no temporary left behind");
        // The wrong kind of rows for an extension, a missing directory or a directory as the
        // target are refused before a byte is written.
        assert!(VectorWriter::create_for(d.path().join("x.fvecs"), 2, Contents::Ids).is_err());
        assert!(VectorWriter::create_for(d.path().join("x.ibin"), 2, Contents::Vectors).is_err());
        assert!(VectorWriter::create(d.path().join("no/such/dir.ivecs"), 2).is_err());
        assert!(VectorWriter::create(d.path(), 2).is_err());
        assert!(VectorWriter::create(d.path().join("x.fbin"), MAX_DIM + 1).is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // .npy takes ids as int64 (numpy's integer); they read back as int32 ground truth
        // while they fit, and a wider one is an error naming it.
        let n = d.path().join("ids.npy");
        let mut w = VectorWriter::create_for(&n, 2, Contents::Ids).unwrap();
        assert_eq!(w.elem(), Elem::I64);
        w.write_i32(&[7, -1]).unwrap();
        w.write_i64(&[1 << 40, 3]).unwrap();
        w.finish().unwrap();
        let f = VectorFile::open(&n).unwrap();
        assert_eq!((f.len(), f.dim(), f.elem()), (2, 2, Elem::I64));
        let e = f.read_all_i32().unwrap_err().to_string();
        assert!(e.contains("1099511627776") && e.contains("row 1"), "{e}");
        assert!(f.read_f32(0, 1, &mut Vec::new()).is_err(), "ids are not vectors");
        let mut w = VectorWriter::create_for(&n, 2, Contents::Ids).unwrap();
        w.write_i64(&[5, -1]).unwrap();
        w.finish().unwrap();
        assert_eq!(VectorFile::open(&n).unwrap().read_all_i32().unwrap(), vec![5, -1]);
        // An int32 file refuses an id it cannot hold, and its target stays as it was.
        let g = d.path().join("wide.ibin");
        let mut w = VectorWriter::create(&g, 1).unwrap();
        assert!(w.write_i64(&[i32::MAX as i64 + 1]).unwrap_err().to_string().contains(".npy"));
        drop(w);
        assert!(!g.exists());
    }

    /// Sizes in headers are checked before anything is allocated from them.
    #[test]
    fn implausible_headers_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.fbin");
        std::fs::write(&p, [1i32.to_le_bytes(), 2_000_000_000i32.to_le_bytes()].concat()).unwrap();
        assert!(matches!(VectorFile::open(&p), Err(InputError::BadHeader { .. })));
        let p = d.path().join("x.npy");
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        std::fs::write(&p, &b).unwrap();
        assert!(matches!(VectorFile::open(&p), Err(InputError::Truncated { .. })));
    }

    /// Shards read as one: the same rows, in order, as the concatenated file; a shard of
    /// another dimension is refused naming it.
    #[test]
    fn shards_read_as_their_concatenation() {
        let d = tempfile::tempdir().unwrap();
        let all: Vec<f32> = (0..60).map(|i| i as f32).collect();
        let mut paths = Vec::new();
        for (i, rows) in [(0, 0..4), (1, 4..5), (2, 5..20)] {
            let p = d.path().join(format!("s{i}.fbin"));
            let mut w = VectorWriter::create(&p, 3).unwrap();
            w.write_f32(&all[rows.start * 3..rows.end * 3]).unwrap();
            w.finish().unwrap();
            paths.push(p);
        }
        let files = VectorFiles::open(&paths).unwrap();
        let whole = all;
        assert_eq!(files.len() * 3, whole.len());
        for (start, count) in [(0, files.len()), (3, 2), (1, 100)] {
            let mut got = Vec::new();
            files.read_f32(start, count, &mut got).unwrap();
            let end = (start + count).min(files.len());
            assert_eq!(got, whole[start * 3..end * 3], "{start} {count}");
        }
        let other = d.path().join("o.fbin");
        let mut w = VectorWriter::create(&other, 4).unwrap();
        w.write_f32(&[1.0; 8]).unwrap();
        w.finish().unwrap();
        let e = VectorFiles::open(&[&paths[0], &other]).unwrap_err();
        assert!(e.to_string().contains("o.fbin") && e.to_string().contains("4-dimensional"), "{e}");
        assert!(VectorFiles::open::<&Path>(&[]).is_err());
    }

    #[test]
    fn float16_widens_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.fvecs");
        let mut w = VectorWriter::create(&p, 3).unwrap();
        w.write_f32(&rows()).unwrap();
        w.finish().unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 2]).unwrap();
        assert!(matches!(VectorFile::open(&p), Err(InputError::Truncated { .. })));
        let mut bad = full.clone();
        bad[16] = 4; // row 1 declares dimension 4
        std::fs::write(&p, &bad).unwrap();
        let f = VectorFile::open(&p).unwrap();
        assert!(matches!(f.read_all_f32(), Err(InputError::DimensionMismatch { row: 1, .. })));
        let mut nan = full.clone();
        nan[16 * 3 + 4..16 * 3 + 8].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&p, &nan).unwrap();
        let e = VectorFile::open(&p).unwrap().read_all_f32().unwrap_err();
        assert!(matches!(e, InputError::NonFinite { row: 3, col: 0, .. }), "{e}");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(VectorFile::open(&p), Err(InputError::Empty { .. })));
        assert!(matches!(VectorFile::open(d.path().join("x.csv")), Err(InputError::UnknownFormat { .. })));
        assert!(matches!(VectorFile::open(d.path().join("missing.fvecs")), Err(InputError::Io { .. })));
    }
}
