//! Argument value parsers shared by the subcommands. clap calls them while parsing, so a bad
//! value is refused before any work with a message naming the flag ("invalid value '0' for
//! '--niter `<NITER>`': must be at least 1") and exit status 2.

use std::fmt;
use std::str::FromStr;

/// Most worker threads a command accepts: more than any machine quiver targets has cores.
pub const MAX_THREADS: usize = 1024;

fn int(s: &str) -> Result<u64, String> {
    s.trim().parse::<u64>().map_err(|_| "not a whole number".to_string())
}

fn in_range(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let v = int(s)?;
    if v < lo {
        Err(format!("must be at least {lo}"))
    } else if v > hi {
        Err(format!("must be at most {hi}"))
    } else {
        Ok(v)
    }
}

/// A count of at least 1 (iterations, vectors, neighbours, widths).
pub fn count(s: &str) -> Result<usize, String> {
    in_range(s, 1, u32::MAX as u64).map(|v| v as usize)
}

/// A count of at least 1 that may exceed 2^32 (vectors to generate).
pub fn count64(s: &str) -> Result<u64, String> {
    in_range(s, 1, 1 << 40)
}

/// A vector dimension, 1 ..= quiver's largest.
pub fn dim(s: &str) -> Result<usize, String> {
    in_range(s, 1, quiver::MAX_DIM as u64).map(|v| v as usize)
}

/// Threads: 0 = one per core.
pub fn threads(s: &str) -> Result<usize, String> {
    in_range(s, 0, MAX_THREADS as u64).map(|v| v as usize)
}

/// A recall to reach: a number in (0, 1].
pub fn recall(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(_) => Err("must be in (0, 1], e.g. 0.95".into()),
        Err(_) => Err(format!("{s:?} is not a number; give a recall in (0, 1], e.g. 0.95")),
    }
}

/// A size in bytes: `4096`, `512MiB`, `2GiB`, `1.5G`. Units: `K`/`KiB`, `M`/`MiB`, `G`/`GiB`,
/// `T`/`TiB` are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of 1000; `B` or none, bytes.
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err("not a size (write e.g. 512MiB, 2GiB, 1.5G or a number of bytes)".into());
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown unit {other:?} (write e.g. 512MiB, 2GiB, 1.5G or a number of bytes)")),
    };
    let v: f64 =
        num.parse().map_err(|_| "not a size (write e.g. 512MiB, 2GiB, 1.5G or a number of bytes)".to_string())?;
    let bytes = v * mult as f64;
    if bytes.is_nan() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err("must be at least 1 byte".into());
    }
    Ok(bytes as u64)
}

/// A byte size as [`size`] reads it, or 0 (for budgets where 0 means "none").
pub fn size_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        Ok(0)
    } else {
        size(s)
    }
}

/// A comma-separated list of counts, such as `--nprobe 1,4,16,64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountList(pub Vec<usize>);

impl FromStr for CountList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut v = Vec::new();
        for t in s.split(',') {
            let n = count(t)
                .map_err(|e| format!("element {t:?}: {e} (write comma-separated whole numbers, e.g. 1,4,16)"))?;
            if !v.contains(&n) {
                v.push(n);
            }
        }
        Ok(CountList(v))
    }
}

impl fmt::Display for CountList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.0.iter().map(|v| v.to_string()).collect();
        f.write_str(&s.join(","))
    }
}

/// A mistake in the command line found after parsing (a flag that does not fit the index or
/// the data): reported like clap's own errors, with exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Wraps an error about the value of `flag` as a [`Usage`] error naming the flag.
pub fn flag_error(flag: &str, e: impl fmt::Display) -> Box<dyn std::error::Error> {
    Box::new(Usage(format!("{flag}: {e}")))
}

/// Returns a [`Usage`] error.
pub fn usage<T>(msg: impl Into<String>) -> Result<T, Box<dyn std::error::Error>> {
    Err(Box::new(Usage(msg.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_name_the_bad_element() {
        assert_eq!("1,4,16,4".parse::<CountList>().unwrap().0, vec![1, 4, 16]);
        for bad in ["1,,x", "", "0", "1,-2", "3.5"] {
            assert!(bad.parse::<CountList>().is_err(), "{bad}");
        }
        assert!("1,,x".parse::<CountList>().unwrap_err().contains("\"\""));
        assert_eq!(count("0").unwrap_err(), "must be at least 1");
        assert!(dim("2000000000").unwrap_err().contains("at most 65536"));
        assert!(threads("100000").is_err());
        assert_eq!(recall("0.95").unwrap(), 0.95);
        assert_eq!(recall("1").unwrap(), 1.0);
        for bad in ["0", "-0.5", "1.01", "nan", "x", ""] {
            assert!(recall(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_in_one_syntax() {
        assert_eq!(size("4096").unwrap(), 4096);
        assert_eq!(size("512MiB").unwrap(), 512 << 20);
        assert_eq!(size("2GiB").unwrap(), 2 << 30);
        assert_eq!(size("2g").unwrap(), 2 << 30);
        assert_eq!(size("1.5G").unwrap(), 3 << 29);
        assert_eq!(size("3GB").unwrap(), 3_000_000_000);
        for bad in ["0", "", "abc", "12XB", "-1G", "0.1"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }
}
