//! Sorted runs: the build's scratch files between the streaming pass and the merge. A run holds
//! the codes and ids of a consecutive range of input rows, grouped by list in ascending list
//! order; each group names its list and count once, then its records (ids ascending). Ids are
//! stored relative to the run's first row, in 4 bytes when the run spans fewer than 2^32 rows.
//!
//! Layout: [`FileHeader`](super::FileHeader) (kind 6, payload at 64) · [`RunHeader`] ·
//! `n_groups` × ([`RunGroup`] · `count` × (local id · code)). The header's `payload_crc` covers
//! everything after the file header; a run is written whole, then its header, then fsynced and
//! renamed to its final name, so a run under its final name is complete.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::FormatError;

/// What a run covers and how its records are sized, 48 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct RunHeader {
    /// First input row (= id) the run covers.
    pub first_row: U64,
    /// One past the last input row it covers.
    pub end_row: U64,
    pub nlist: U32,
    pub code_size: U32,
    /// Bytes of each record's id, relative to `first_row`: 4 or 8.
    pub id_bytes: U32,
    /// Groups (non-empty lists) that follow.
    pub n_groups: U32,
    /// Records in all groups: `end_row - first_row`.
    pub records: U64,
    pub reserved: [u8; 8],
}

/// One list's records in a run, 8 bytes; `count` records follow it.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct RunGroup {
    pub list: U32,
    pub count: U32,
}

/// Id bytes for a run of `rows` rows.
pub fn run_id_bytes(rows: u64) -> u32 {
    if rows <= u32::MAX as u64 + 1 {
        4
    } else {
        8
    }
}

/// Bytes of a run's payload: header, `groups` group headers and `rows` records.
pub fn run_payload_len(rows: u64, groups: u64, code_size: usize) -> u64 {
    std::mem::size_of::<RunHeader>() as u64
        + groups * std::mem::size_of::<RunGroup>() as u64
        + rows * (run_id_bytes(rows) as u64 + code_size as u64)
}

impl RunHeader {
    pub fn new(first_row: u64, end_row: u64, nlist: usize, code_size: usize, n_groups: u32) -> Self {
        let rows = end_row - first_row;
        RunHeader {
            first_row: first_row.into(),
            end_row: end_row.into(),
            nlist: (nlist as u32).into(),
            code_size: (code_size as u32).into(),
            id_bytes: run_id_bytes(rows).into(),
            n_groups: n_groups.into(),
            records: rows.into(),
            reserved: [0; 8],
        }
    }

    /// Checks the header against the build reading it (`nlist`, `code_size`) and itself.
    pub fn check(&self, file: &str, nlist: usize, code_size: usize) -> Result<(), FormatError> {
        let invalid = |reason: String| FormatError::Invalid {
            file: file.into(),
            what: "run header".into(),
            offset: super::HEADER_LEN as u64,
            reason,
        };
        let (first, end) = (self.first_row.get(), self.end_row.get());
        if end <= first || self.records.get() != end - first {
            return Err(invalid(format!("rows {first}..{end} hold {} records", self.records.get())));
        }
        if self.id_bytes.get() != run_id_bytes(end - first) {
            return Err(invalid(format!("{} id bytes for {} rows", self.id_bytes.get(), end - first)));
        }
        if self.nlist.get() as usize != nlist || self.code_size.get() as usize != code_size {
            return Err(invalid(format!(
                "written for nlist {} and {}-byte codes, this build has nlist {nlist} and {code_size}-byte codes",
                self.nlist.get(),
                self.code_size.get()
            )));
        }
        if self.n_groups.get() as u64 > self.records.get().min(nlist as u64) {
            return Err(invalid(format!("{} groups for {} records", self.n_groups.get(), self.records.get())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_take_four_bytes_below_two_to_the_32_rows() {
        assert_eq!(run_id_bytes(1), 4);
        assert_eq!(run_id_bytes(1 << 32), 4);
        assert_eq!(run_id_bytes((1 << 32) + 1), 8);
        assert_eq!(run_payload_len(10, 3, 32), 48 + 24 + 10 * 36);
    }

    #[test]
    fn a_header_that_disagrees_with_itself_or_the_build_is_refused() {
        let h = RunHeader::new(100, 200, 64, 8, 50);
        assert!(h.check("r", 64, 8).is_ok());
        assert!(h.check("r", 65, 8).is_err());
        assert!(h.check("r", 64, 16).is_err());
        let mut bad = h;
        bad.records = 99.into();
        assert!(bad.check("r", 64, 8).is_err());
        let mut bad = h;
        bad.n_groups = 101.into();
        assert!(bad.check("r", 64, 8).is_err());
        let mut bad = h;
        bad.id_bytes = 8.into();
        assert!(bad.check("r", 64, 8).is_err());
    }
}
