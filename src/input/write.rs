//! Streaming writer for the same formats (`gen`, `gt` and `search --out` use it). Headers that
//! carry a row count (`fbin`, `.npy`) are patched when the writer finishes.
//!
//! The rows go to a temporary file beside the target (`.<name>.tmp-<pid>`), which `finish`
//! syncs and renames over the target. Until then the target is untouched: a full disk, an
//! error or a kill mid-way leaves the previous file as it was, and a writer dropped without
//! `finish` removes its temporary.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Elem, InputError, Layout, MAX_DIM};
use crate::io::durable;

pub struct VectorWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    layout: Layout,
    elem: Elem,
    dim: usize,
    rows: u64,
}

/// What the rows of a file are: vectors (float32, uint8, int8) or ids (int32; int64 in `.npy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contents {
    Vectors,
    Ids,
}

/// Fixed size of the .npy header we write, so it can be rewritten in place with the final shape.
const NPY_HEADER: usize = 128;

impl VectorWriter {
    /// Starts writing `path` (vectors, or ids for `.ivecs`/`.ibin`); the format and element type
    /// follow the extension. Nothing appears at `path` until [`finish`](Self::finish).
    pub fn create(path: impl AsRef<Path>, dim: usize) -> Result<Self, InputError> {
        let path = path.as_ref();
        let contents = match Layout::from_path(path)? {
            Layout::Vecs(Elem::I32) | Layout::Bin(Elem::I32) => Contents::Ids,
            _ => Contents::Vectors,
        };
        Self::create_for(path, dim, contents)
    }

    /// Starts writing `path` with rows of `contents`, checking before anything is written that
    /// the extension can hold them (`.npy` holds either: float32 vectors or int64 ids), that
    /// `dim` is in range and that the target's directory exists.
    pub fn create_for(path: impl AsRef<Path>, dim: usize, contents: Contents) -> Result<Self, InputError> {
        let path = path.as_ref().to_owned();
        let layout = Layout::from_path(&path)?;
        let elem = match (layout, contents) {
            (Layout::Npy, Contents::Vectors) => Elem::F32,
            (Layout::Npy, Contents::Ids) => Elem::I64,
            (Layout::Vecs(e) | Layout::Bin(e), _) => e,
        };
        let wrong = |expected| InputError::WrongType { path: path.clone(), expected, found: elem.name() };
        match contents {
            Contents::Ids if !elem.is_id() => return Err(wrong("ids: use .ivecs, .ibin or .npy")),
            Contents::Vectors if elem.is_id() => {
                return Err(wrong("vectors: use .fvecs, .fbin, .bvecs, .u8bin, .i8bin or .npy"))
            }
            _ => {}
        }
        if dim == 0 || dim > MAX_DIM {
            return Err(InputError::BadHeader { path, reason: format!("dimension {dim} is outside 1 ..= {MAX_DIM}") });
        }
        let io = |source| InputError::Io { path: path.clone(), source };
        if path.is_dir() {
            return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory, not a file name")));
        }
        let parent = durable::parent_dir(&path);
        if !parent.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot be written: the directory {} does not exist", parent.display()),
            )));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = durable::parent_dir(&path).join(format!(".{name}.tmp-{}", std::process::id()));
        let f = File::create(&tmp).map_err(io)?;
        let mut w =
            VectorWriter { path, tmp, out: Some(BufWriter::with_capacity(1 << 20, f)), layout, elem, dim, rows: 0 };
        let header_len = match layout {
            Layout::Bin(_) => 8,
            Layout::Npy => NPY_HEADER,
            Layout::Vecs(_) => 0,
        };
        w.put(&vec![0u8; header_len])?;
        Ok(w)
    }

    /// Most rows the format can record: the `fbin` family stores n as an int32.
    pub fn max_rows(&self) -> u64 {
        match self.layout {
            Layout::Bin(_) => i32::MAX as u64,
            _ => u64::MAX,
        }
    }

    fn count_rows(&mut self, rows: usize) -> Result<(), InputError> {
        self.rows += rows as u64;
        if self.rows > self.max_rows() {
            return Err(InputError::BadHeader {
                path: self.path.clone(),
                reason: format!(
                    "more than {} rows do not fit this format's header; use .fvecs or .npy",
                    self.max_rows()
                ),
            });
        }
        Ok(())
    }

    /// The element type rows are stored as.
    pub fn elem(&self) -> Elem {
        self.elem
    }

    fn put(&mut self, b: &[u8]) -> Result<(), InputError> {
        let out = self.out.as_mut().expect("writer used after finish");
        out.write_all(b).map_err(|source| InputError::Io { path: self.path.clone(), source })
    }

    /// Appends rows (a multiple of `dim` values). uint8/int8 targets round and saturate.
    pub fn write_f32(&mut self, v: &[f32]) -> Result<(), InputError> {
        if self.elem.is_id() {
            return Err(InputError::WrongType { path: self.path.clone(), expected: "ids", found: "float32" });
        }
        let mut buf = Vec::with_capacity(v.len() * 4 + v.len() / self.dim * 4);
        for row in v.chunks_exact(self.dim) {
            if matches!(self.layout, Layout::Vecs(_)) {
                buf.extend_from_slice(&(self.dim as i32).to_le_bytes());
            }
            for &x in row {
                match self.elem {
                    Elem::F32 => buf.extend_from_slice(&x.to_le_bytes()),
                    Elem::U8 => buf.push(x.round().clamp(0.0, 255.0) as u8),
                    Elem::I8 => buf.push(x.round().clamp(-128.0, 127.0) as i8 as u8),
                    Elem::I32 | Elem::I64 | Elem::F16 => unreachable!("vector writers are float32, uint8 or int8"),
                }
            }
        }
        self.count_rows(v.len() / self.dim)?;
        self.put(&buf)
    }

    /// Appends rows of ids: int32 in `.ivecs` / `.ibin`, int64 in `.npy`.
    pub fn write_i32(&mut self, v: &[i32]) -> Result<(), InputError> {
        self.write_ids(v.iter().map(|&x| x as i64), v.len())
    }

    /// [`write_i32`](Self::write_i32) of int64 ids; an id that an int32 file cannot hold is an
    /// error (check the largest id first: nothing is written past it).
    pub fn write_i64(&mut self, v: &[i64]) -> Result<(), InputError> {
        if self.elem == Elem::I32 {
            if let Some(&x) = v.iter().find(|&&x| i32::try_from(x).is_err()) {
                return Err(InputError::BadHeader {
                    path: self.path.clone(),
                    reason: format!("id {x} does not fit int32; write .npy (int64) instead"),
                });
            }
        }
        self.write_ids(v.iter().copied(), v.len())
    }

    fn write_ids(&mut self, v: impl Iterator<Item = i64>, len: usize) -> Result<(), InputError> {
        if !self.elem.is_id() {
            return Err(InputError::WrongType { path: self.path.clone(), expected: self.elem.name(), found: "ids" });
        }
        let size = self.elem.size();
        let mut buf = Vec::with_capacity(len * size + len / self.dim * 4);
        for (i, x) in v.enumerate() {
            if i % self.dim == 0 && matches!(self.layout, Layout::Vecs(_)) {
                buf.extend_from_slice(&(self.dim as i32).to_le_bytes());
            }
            match self.elem {
                Elem::I64 => buf.extend_from_slice(&x.to_le_bytes()),
                _ => buf.extend_from_slice(&(x as i32).to_le_bytes()),
            }
        }
        self.count_rows(len / self.dim)?;
        self.put(&buf)
    }

    /// Writes the header's final row count, syncs, and renames the file into place.
    pub fn finish(mut self) -> Result<(), InputError> {
        let header = match self.layout {
            Layout::Bin(_) => {
                let mut h = (self.rows as i32).to_le_bytes().to_vec();
                h.extend_from_slice(&(self.dim as i32).to_le_bytes());
                Some(h)
            }
            Layout::Npy => {
                let descr = match self.elem {
                    Elem::I32 => "<i4",
                    Elem::I64 => "<i8",
                    _ => "<f4",
                };
                let dict =
                    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}", self.rows, self.dim);
                let mut h = b"\x93NUMPY\x01\x00".to_vec();
                h.extend_from_slice(&((NPY_HEADER - 10) as u16).to_le_bytes());
                h.extend_from_slice(dict.as_bytes());
                h.resize(NPY_HEADER - 1, b' ');
                h.push(b'\n');
                Some(h)
            }
            Layout::Vecs(_) => None,
        };
        let path = self.path.clone();
        let io = |source| InputError::Io { path: path.clone(), source };
        let mut out = self.out.take().expect("finish runs once");
        out.flush().map_err(io)?;
        let mut f = out.into_inner().map_err(|e| io(e.into_error()))?;
        if let Some(h) = header {
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            f.write_all(&h).map_err(io)?;
        }
        durable::sync_file(&f).map_err(io)?;
        drop(f);
        durable::publish(&self.tmp, &self.path).map_err(io)?;
        // Published: nothing left for Drop to remove.
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for VectorWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
