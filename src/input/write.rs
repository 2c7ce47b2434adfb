//! Streaming writer for the same formats (`gen`, `gt` and `search --out` use it). Headers that
//! carry a row count (`fbin`, `.npy`) are patched when the writer finishes.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Elem, InputError, Layout};

pub struct VectorWriter {
    path: PathBuf,
    out: BufWriter<File>,
    layout: Layout,
    elem: Elem,
    dim: usize,
    rows: u64,
}

/// Fixed size of the .npy header we write, so it can be rewritten in place with the final shape.
const NPY_HEADER: usize = 128;

impl VectorWriter {
    /// Creates `path`; the format and element type follow the extension.
    pub fn create(path: impl AsRef<Path>, dim: usize) -> Result<Self, InputError> {
        let path = path.as_ref().to_owned();
        let layout = Layout::from_path(&path)?;
        let elem = match layout {
            Layout::Vecs(e) | Layout::Bin(e) => e,
            Layout::Npy => Elem::F32,
        };
        let f = File::create(&path).map_err(|source| InputError::Io { path: path.clone(), source })?;
        let mut w = VectorWriter { path, out: BufWriter::with_capacity(1 << 20, f), layout, elem, dim, rows: 0 };
        let header_len = match layout {
            Layout::Bin(_) => 8,
            Layout::Npy => NPY_HEADER,
            Layout::Vecs(_) => 0,
        };
        w.put(&vec![0u8; header_len])?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<(), InputError> {
        self.out.write_all(b).map_err(|source| InputError::Io { path: self.path.clone(), source })
    }

    /// Appends rows (a multiple of `dim` values). uint8/int8 targets round and saturate.
    pub fn write_f32(&mut self, v: &[f32]) -> Result<(), InputError> {
        if self.elem == Elem::I32 {
            return Err(InputError::WrongType { path: self.path.clone(), expected: "int32 ids", found: "float32" });
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
                    Elem::I32 => unreachable!(),
                }
            }
            self.rows += 1;
        }
        self.put(&buf)
    }

    /// Appends rows of int32 (ids), for `.ivecs` / `.ibin`.
    pub fn write_i32(&mut self, v: &[i32]) -> Result<(), InputError> {
        if self.elem != Elem::I32 {
            return Err(InputError::WrongType { path: self.path.clone(), expected: self.elem.name(), found: "int32" });
        }
        let mut buf = Vec::with_capacity(v.len() * 4 + v.len() / self.dim * 4);
        for row in v.chunks_exact(self.dim) {
            if matches!(self.layout, Layout::Vecs(_)) {
                buf.extend_from_slice(&(self.dim as i32).to_le_bytes());
            }
            row.iter().for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            self.rows += 1;
        }
        self.put(&buf)
    }

    /// Writes the header's final row count and flushes to disk.
    pub fn finish(mut self) -> Result<(), InputError> {
        let header = match self.layout {
            Layout::Bin(_) => {
                let mut h = (self.rows as i32).to_le_bytes().to_vec();
                h.extend_from_slice(&(self.dim as i32).to_le_bytes());
                Some(h)
            }
            Layout::Npy => {
                let dict =
                    format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", self.rows, self.dim);
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
        self.out.flush().map_err(io)?;
        let mut f = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        if let Some(h) = header {
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            f.write_all(&h).map_err(io)?;
        }
        f.sync_all().map_err(io)
    }
}
