//! Code layouts: how the codes of one list's vectors sit at the start of an extent. The manifest
//! names the layout (`code_layout`) and the list directory the bytes per vector (`code_size`);
//! this type is the one place that turns a vector count into byte sizes, so segment writers,
//! readers, the directory's checks and `verify` cannot disagree. What the code bytes mean is the
//! codec's business, not the format's.

use super::{align_up, PAGE};

/// Vectors per block in [`CodeLayout::Blocks32`].
pub const LAYOUT_BLOCK: u64 = 32;

/// A code layout and its bytes per vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeLayout {
    /// `code_layout` 1: vector i's code at `i · code_size` (8-bit PQ: `code_size` = m).
    RowMajor { code_size: u32 },
    /// `code_layout` 2: blocks of 32 vectors, `32 · code_size` bytes each, the last block
    /// padded with zero codes (4-bit fast-scan PQ: `code_size` = m / 2; the nibble order inside
    /// a block is in format-spec/04-segment.md).
    Blocks32 { code_size: u32 },
}

/// Where an extent's ids are (the list directory's `flags`, format 1.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdsPlace {
    /// After the codes, in the extent (every index before 1.5, and every index without full
    /// vectors).
    #[default]
    InExtent,
    /// Beside each full vector in the segment's vectors file, and again as a block after the
    /// extent's vectors there (`,RFlat` indexes from 1.5): the extent holds codes alone, so a
    /// search that re-ranks reads no ids with the lists, and gets each candidate's id with
    /// its vector.
    WithVectors,
}

/// [`align_up`], held at the largest multiple of `a` instead of wrapping.
const fn align_up_saturating(v: u64, a: u64) -> u64 {
    if v > u64::MAX - (a - 1) {
        !(a - 1)
    } else {
        align_up(v, a)
    }
}

impl CodeLayout {
    /// The layout a manifest's `code_layout` byte names, with the directory's `code_size`.
    pub fn from_code(code: u8, code_size: u32) -> Option<Self> {
        match code {
            super::CODE_LAYOUT_PQ8 => Some(CodeLayout::RowMajor { code_size }),
            super::CODE_LAYOUT_PQ4FS => Some(CodeLayout::Blocks32 { code_size }),
            _ => None,
        }
    }

    /// The manifest's `code_layout` byte.
    pub fn code(&self) -> u8 {
        match self {
            CodeLayout::RowMajor { .. } => super::CODE_LAYOUT_PQ8,
            CodeLayout::Blocks32 { .. } => super::CODE_LAYOUT_PQ4FS,
        }
    }

    /// Bytes per vector.
    pub fn code_size(&self) -> u64 {
        match *self {
            CodeLayout::RowMajor { code_size } | CodeLayout::Blocks32 { code_size } => code_size as u64,
        }
    }

    /// Bytes of the code area of an extent of `count` vectors. These sizes saturate rather than
    /// wrap: a record from a damaged file then asks for more bytes than any extent has, and is
    /// refused as too short.
    pub const fn codes_len(&self, count: u64) -> u64 {
        match *self {
            CodeLayout::RowMajor { code_size } => count.saturating_mul(code_size as u64),
            CodeLayout::Blocks32 { code_size } => {
                count.div_ceil(LAYOUT_BLOCK).saturating_mul(LAYOUT_BLOCK).saturating_mul(code_size as u64)
            }
        }
    }

    /// Offset of the ids inside an extent of `count` vectors.
    pub const fn ids_offset(&self, count: u64) -> u64 {
        align_up_saturating(self.codes_len(count), 8)
    }

    /// Bytes an extent of `count` vectors occupies on disk.
    pub const fn extent_len(&self, count: u64) -> u64 {
        align_up_saturating(self.ids_offset(count).saturating_add(count.saturating_mul(8)), PAGE)
    }

    /// [`extent_len`](Self::extent_len) where the ids are `ids`: with the vectors, the codes
    /// alone, padded to a page.
    pub const fn extent_len_in(&self, count: u64, ids: IdsPlace) -> u64 {
        match ids {
            IdsPlace::InExtent => self.extent_len(count),
            IdsPlace::WithVectors => align_up_saturating(self.codes_len(count), PAGE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_both_layouts() {
        let row = CodeLayout::RowMajor { code_size: 32 };
        assert_eq!((row.codes_len(100), row.ids_offset(100), row.extent_len(100)), (3200, 3200, 4096));
        assert_eq!(row.ids_offset(5), 160);
        // 33 vectors at 16 bytes: two blocks of 32, 1024 bytes, then 264 bytes of ids.
        let blocks = CodeLayout::Blocks32 { code_size: 16 };
        assert_eq!((blocks.codes_len(33), blocks.ids_offset(33), blocks.extent_len(33)), (1024, 1024, 4096));
        assert_eq!(blocks.codes_len(0), 0);
        assert_eq!(blocks.extent_len(200), 8192);
        for l in [row, blocks] {
            assert_eq!(CodeLayout::from_code(l.code(), l.code_size() as u32), Some(l));
        }
        assert_eq!(CodeLayout::from_code(9, 4), None);
    }
}
