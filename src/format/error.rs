//! Errors of the format layer. Each names the file, the structure and the byte offset, and says
//! what to do about it.

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error("{file}: not a quiver file (starts with {found:02x?}, expected \"QUIVERix\"); check that the path is a quiver index")]
    BadMagic { file: String, found: [u8; 8] },
    #[error("{file}: format version {major}.{minor} is not readable by this quiver (reads 1.0 up to {}.{}); use a newer quiver", super::FORMAT_MAJOR, super::FORMAT_MINOR)]
    UnsupportedVersion { file: String, major: u16, minor: u16 },
    #[error("{file}: checksum mismatch in {what} at offset {offset} ({len} bytes): stored {stored:#010x}, computed {computed:#010x}; the file is corrupted: rebuild the index or restore it from a copy")]
    ChecksumMismatch { file: String, what: String, offset: u64, len: u64, stored: u32, computed: u32 },
    #[error("{file}: truncated: {what} needs {needed} bytes at offset {offset}, only {available} present; the file was cut short: rebuild the index or restore it from a copy")]
    Truncated { file: String, what: String, offset: u64, needed: u64, available: u64 },
    #[error("{file}: expected a {expected} file, found a {found} file")]
    WrongKind { file: String, expected: String, found: String },
    #[error("{file}: invalid {what} at offset {offset}: {reason}")]
    Invalid { file: String, what: String, offset: u64, reason: String },
}

impl FormatError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            FormatError::BadMagic { file, .. }
            | FormatError::UnsupportedVersion { file, .. }
            | FormatError::ChecksumMismatch { file, .. }
            | FormatError::Truncated { file, .. }
            | FormatError::WrongKind { file, .. }
            | FormatError::Invalid { file, .. } => file,
        }
    }

    /// The byte offset in the file where the problem is (0 for the header's fields).
    pub fn offset(&self) -> u64 {
        match self {
            FormatError::ChecksumMismatch { offset, .. }
            | FormatError::Truncated { offset, .. }
            | FormatError::Invalid { offset, .. } => *offset,
            _ => 0,
        }
    }
}
