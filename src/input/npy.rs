//! NumPy `.npy` v1/v2/v3 headers: C-order 2-d arrays of float32, uint8, int8 or int32.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Elem, InputError};

pub(super) struct NpyHeader {
    pub elem: Elem,
    pub n: usize,
    pub d: usize,
    pub data_offset: u64,
}

const MAGIC: &[u8] = b"\x93NUMPY";

pub(super) fn read_header(file: &File, path: &Path) -> Result<NpyHeader, InputError> {
    let bad = |reason: String| InputError::BadHeader { path: path.to_owned(), reason };
    let mut pre = [0u8; 12];
    let got = file.read_at(&mut pre, 0).map_err(|source| InputError::Io { path: path.to_owned(), source })?;
    if got < 10 || &pre[..6] != MAGIC {
        return Err(bad("not a .npy file (missing \\x93NUMPY magic)".into()));
    }
    let (len, start) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize, 12),
        v => return Err(bad(format!(".npy version {v} is not supported"))),
    };
    if len > 1 << 20 {
        return Err(bad(format!("header length {len} is implausible")));
    }
    let mut h = vec![0u8; len];
    file.read_exact_at(&mut h, start as u64).map_err(|_| bad("header is truncated".into()))?;
    let h = String::from_utf8_lossy(&h);
    let field = |key: &str| -> Option<String> {
        let i = h.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = h[i..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
        Some(rest[..end].trim().to_string())
    };
    let descr = field("descr").ok_or_else(|| bad("no 'descr' in header".into()))?;
    let elem = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" => Elem::F32,
        "<f2" => Elem::F16,
        "|u1" | "<u1" => Elem::U8,
        "|i1" | "<i1" => Elem::I8,
        "<i4" => Elem::I32,
        "<i8" => Elem::I64,
        other => return Err(bad(format!("dtype {other} is not supported (float32, float16, uint8, int8, int32)"))),
    };
    if field("fortran_order").as_deref() != Some("False") {
        return Err(bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into()));
    }
    let shape = field("shape").ok_or_else(|| bad("no 'shape' in header".into()))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("cannot parse shape {shape}")))?;
    let (n, d) = match dims[..] {
        [n, d] => (n, d),
        [n] => (n, 1),
        _ => return Err(bad(format!("expected a 2-d array, shape is {shape}"))),
    };
    if d == 0 {
        return Err(bad("dimension 0".into()));
    }
    Ok(NpyHeader { elem, n, d, data_offset: (start + len) as u64 })
}
