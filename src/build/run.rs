//! Sorted runs on disk (layout: `format::run`, format-spec/09-build-staging.md): written whole
//! under a temporary name, fsynced and renamed, so a run under its final name is a durable
//! checkpoint; read back as a stream of (list, id, code) records, verified by their checksum
//! as they go by.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zerocopy::{FromBytes, IntoBytes};

use crate::error::{Error, IoContext, Result};
use crate::format::{FileHeader, FileKind, RunGroup, RunHeader, HEADER_LEN};
use crate::io::durable;

/// File name of the run covering input rows `first..end`: sorting names sorts runs by row.
pub fn run_name(first: u64, end: u64) -> String {
    format!("run-{first:012}-{end:012}.qvr")
}

/// The row range a run's file name claims, if `name` is a run's name.
pub fn parse_run_name(name: &str) -> Option<(u64, u64)> {
    let core = name.strip_prefix("run-")?.strip_suffix(".qvr")?;
    let (a, b) = core.split_once('-')?;
    let digits = |s: &str| s.len() == 12 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a < b).then_some((a, b))
}

/// Writes one run: groups in ascending list order, each group's records in the order given.
pub(super) struct RunWriter {
    tmp: PathBuf,
    path: PathBuf,
    w: BufWriter<File>,
    crc: u32,
    len: u64,
    header: RunHeader,
    groups: u32,
    id_bytes: usize,
    first_row: u64,
}

impl RunWriter {
    pub fn create(dir: &Path, first_row: u64, end_row: u64, nlist: usize, code_size: usize) -> Result<RunWriter> {
        let path = dir.join(run_name(first_row, end_row));
        let tmp = path.with_extension("qvr.tmp");
        let f = File::create(&tmp).at(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(&[0u8; HEADER_LEN]).at(&tmp)?;
        let header = RunHeader::new(first_row, end_row, nlist, code_size, 0);
        w.write_all(header.as_bytes()).at(&tmp)?;
        Ok(RunWriter {
            crc: 0,
            len: 0,
            id_bytes: header.id_bytes.get() as usize,
            header,
            groups: 0,
            first_row,
            tmp,
            path,
            w,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.len += bytes.len() as u64;
        self.w.write_all(bytes).at(&self.tmp)
    }

    pub fn group(&mut self, list: u32, count: u32) -> Result<()> {
        self.groups += 1;
        let g = RunGroup { list: list.into(), count: count.into() };
        self.put(g.as_bytes())
    }

    /// One record: its id, its code, then its full vector (empty where the index keeps none;
    /// the run's `code_size` counts both).
    pub fn record(&mut self, id: u64, code: &[u8], vector: &[u8]) -> Result<()> {
        let local = (id - self.first_row).to_le_bytes();
        let id_bytes = self.id_bytes;
        self.put(&local[..id_bytes])?;
        self.put(code)?;
        self.put(vector)
    }

    /// Completes the run: the header (now with its group count and checksum) goes in front,
    /// the file is fsynced and renamed to its final name. Returns the final path and size.
    pub fn finish(mut self, index_id: [u8; 16]) -> Result<(PathBuf, u64)> {
        self.w.flush().at(&self.tmp)?;
        let f = self.w.into_inner().map_err(|e| e.into_error()).at(&self.tmp)?;
        self.header.n_groups = self.groups.into();
        // The run header sits at the payload's start: checksum it first, then the body.
        let body_crc = self.crc;
        let head = self.header.as_bytes();
        let crc = crc32c::crc32c_combine(crc32c::crc32c(head), body_crc, self.len as usize);
        let payload_len = head.len() as u64 + self.len;
        let fh = FileHeader::with_crc(FileKind::Run, index_id, HEADER_LEN as u64, payload_len, crc);
        f.write_all_at(fh.as_bytes(), 0).at(&self.tmp)?;
        f.write_all_at(head, HEADER_LEN as u64).at(&self.tmp)?;
        durable::sync_file(&f).at(&self.tmp)?;
        drop(f);
        durable::publish(&self.tmp, &self.path).at(&self.path)?;
        Ok((self.path, HEADER_LEN as u64 + payload_len))
    }
}

/// Reads a run record by record. The checksum is verified when the last group has been read
/// ([`RunReader::finish`]); the merge calls it, so a run damaged at rest never reaches an index.
pub(super) struct RunReader {
    pub path: PathBuf,
    r: BufReader<File>,
    pub header: RunHeader,
    expected_crc: u32,
    crc: u32,
    groups_left: u32,
    /// The current group's list and records left in it.
    group: Option<(u32, u32)>,
    prev_list: Option<u32>,
    records_seen: u64,
    id_buf: [u8; 8],
    pub code: Vec<u8>,
}

impl RunReader {
    pub fn open(path: &Path, buffer: usize, nlist: usize, code_size: usize, index_id: [u8; 16]) -> Result<RunReader> {
        let name = path.display().to_string();
        let mut r = BufReader::with_capacity(buffer.max(4096), File::open(path).at(path)?);
        let mut head = [0u8; HEADER_LEN + std::mem::size_of::<RunHeader>()];
        match r.read_exact(&mut head) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(corrupt(&name, "shorter than its headers"));
            }
            other => other.at(path)?,
        }
        let fh = FileHeader::decode(&name, FileKind::Run, &head)?;
        if fh.index_id != index_id {
            return Err(corrupt(&name, "belongs to another build"));
        }
        let Ok(header) = RunHeader::read_from_bytes(&head[HEADER_LEN..]) else {
            unreachable!("the slice has the header's size")
        };
        header.check(&name, nlist, code_size)?;
        let payload = std::fs::metadata(path).at(path)?.len().saturating_sub(HEADER_LEN as u64);
        if fh.payload_offset.get() != HEADER_LEN as u64 || fh.payload_len.get() != payload {
            return Err(corrupt(&name, "its size is not the one its header records"));
        }
        let mut reader = RunReader {
            path: path.to_owned(),
            r,
            expected_crc: fh.payload_crc.get(),
            crc: crc32c::crc32c(&head[HEADER_LEN..]),
            groups_left: header.n_groups.get(),
            header,
            group: None,
            prev_list: None,
            records_seen: 0,
            id_buf: [0; 8],
            code: vec![0; code_size],
        };
        reader.next_group()?;
        Ok(reader)
    }

    fn read(&mut self, n: usize, into_code: bool) -> Result<()> {
        let buf = if into_code { &mut self.code[..] } else { &mut self.id_buf[..n] };
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.crc = crc32c::crc32c_append(self.crc, buf);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(corrupt(&self.path.display().to_string(), "ends before its last record"))
            }
            Err(e) => Err(e).at(&self.path),
        }
    }

    fn next_group(&mut self) -> Result<()> {
        self.group = None;
        if self.groups_left == 0 {
            return Ok(());
        }
        self.groups_left -= 1;
        self.read(8, false)?;
        let list = u32::from_le_bytes(self.id_buf[..4].try_into().unwrap_or_default());
        let count = u32::from_le_bytes(self.id_buf[4..8].try_into().unwrap_or_default());
        let name = self.path.display().to_string();
        if list >= self.header.nlist.get() || self.prev_list.is_some_and(|p| p >= list) || count == 0 {
            return Err(corrupt(&name, &format!("group of list {list} ({count} records) is out of order")));
        }
        self.prev_list = Some(list);
        self.group = Some((list, count));
        Ok(())
    }

    /// The list of the next record, or `None` when the run is exhausted.
    pub fn head(&self) -> Option<u32> {
        self.group.map(|(l, _)| l)
    }

    /// Records left in the current group.
    pub fn group_left(&self) -> u32 {
        self.group.map_or(0, |(_, c)| c)
    }

    /// Reads the next record of the current group into `self.code` and returns its id.
    pub fn next_record(&mut self) -> Result<u64> {
        let Some((list, left)) = self.group else { unreachable!("called with a group open") };
        let id_bytes = self.header.id_bytes.get() as usize;
        self.read(id_bytes, false)?;
        let mut local = [0u8; 8];
        local[..id_bytes].copy_from_slice(&self.id_buf[..id_bytes]);
        let local = u64::from_le_bytes(local);
        self.read(0, true)?;
        self.records_seen += 1;
        let rows = self.header.records.get();
        if local >= rows || self.records_seen > rows {
            return Err(corrupt(&self.path.display().to_string(), &format!("record {local} is outside the run")));
        }
        if left == 1 {
            self.next_group()?;
        } else {
            self.group = Some((list, left - 1));
        }
        Ok(self.header.first_row.get() + local)
    }

    /// Checks, once every group has been read, that the run held what its header says and
    /// that its checksum matches.
    pub fn finish(&mut self) -> Result<()> {
        let name = self.path.display().to_string();
        if self.group.is_some() {
            return Err(corrupt(&name, "holds a list number beyond nlist"));
        }
        if self.records_seen != self.header.records.get() {
            return Err(corrupt(&name, "holds fewer records than its header says"));
        }
        if self.crc != self.expected_crc {
            return Err(crate::format::FormatError::ChecksumMismatch {
                file: name,
                what: "sorted run".into(),
                offset: HEADER_LEN as u64,
                len: 0,
                stored: self.expected_crc,
                computed: self.crc,
            }
            .into());
        }
        Ok(())
    }
}

/// Reads a whole run and checks it: structure and checksum. A resumed build trusts only runs
/// that pass.
pub(super) fn verify_run(path: &Path, nlist: usize, code_size: usize, index_id: [u8; 16]) -> Result<RunHeader> {
    let mut r = RunReader::open(path, 1 << 20, nlist, code_size, index_id)?;
    while r.head().is_some() {
        r.next_record()?;
    }
    r.finish()?;
    Ok(r.header)
}

fn corrupt(file: &str, reason: &str) -> Error {
    Error::Corrupt { file: file.into(), reason: format!("sorted run {reason}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, first: u64, recs: &[(u32, u64, u8)]) -> PathBuf {
        let end = first + recs.len() as u64;
        let mut w = RunWriter::create(dir, first, end, 16, 4).unwrap();
        let mut i = 0;
        while i < recs.len() {
            let list = recs[i].0;
            let n = recs[i..].iter().take_while(|r| r.0 == list).count();
            w.group(list, n as u32).unwrap();
            for r in &recs[i..i + n] {
                w.record(r.1, &[r.2; 4], &[]).unwrap();
            }
            i += n;
        }
        w.finish([9; 16]).unwrap().0
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let recs = [(1, 102, 7), (1, 105, 8), (3, 100, 9), (3, 101, 1), (3, 103, 2), (15, 104, 3)];
        let p = write(dir.path(), 100, &recs);
        assert_eq!(parse_run_name(&p.file_name().unwrap().to_string_lossy()), Some((100, 106)));
        let mut r = RunReader::open(&p, 4096, 16, 4, [9; 16]).unwrap();
        let mut back = Vec::new();
        while let Some(list) = r.head() {
            let id = r.next_record().unwrap();
            back.push((list, id, r.code[0]));
        }
        r.finish().unwrap();
        assert_eq!(back, recs);
        assert_eq!(verify_run(&p, 16, 4, [9; 16]).unwrap().n_groups.get(), 3);
        assert!(!p.with_extension("qvr.tmp").exists());
    }

    #[test]
    fn every_flipped_byte_a_cut_and_a_foreign_run_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), 0, &[(0, 0, 1), (0, 1, 2), (5, 2, 3)]);
        let good = std::fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x20;
            std::fs::write(&p, &b).unwrap();
            assert!(verify_run(&p, 16, 4, [9; 16]).is_err(), "flip at {i} undetected");
        }
        std::fs::write(&p, &good[..good.len() - 1]).unwrap();
        assert!(verify_run(&p, 16, 4, [9; 16]).is_err());
        std::fs::write(&p, &good).unwrap();
        assert!(verify_run(&p, 16, 4, [8; 16]).is_err(), "another build's run");
        assert!(verify_run(&p, 32, 4, [9; 16]).is_err(), "another nlist");
    }

    #[test]
    fn names_parse_only_when_well_formed() {
        assert_eq!(parse_run_name(&run_name(5, 9)), Some((5, 9)));
        for bad in ["run-000000000005-000000000005.qvr", "run-5-9.qvr", "run-000000000005-000000000009.tmp", "x"] {
            assert_eq!(parse_run_name(bad), None, "{bad}");
        }
    }
}
