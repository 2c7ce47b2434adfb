//! faiss's index factory grammar, parsed in one place: `IVF4096_HNSW32,PQ32`, `HNSW32,Flat`,
//! `IVF4096_HNSW32,Flat`, `HNSW32_PQ32`. `Display` writes the canonical string back.

use std::fmt;
use std::str::FromStr;

/// What a factory string asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexSpec {
    /// `IVF{nlist}_HNSW{M},{payload}[,RFlat]`: inverted lists with an HNSW coarse quantizer;
    /// with `,RFlat` (faiss's `IndexRefineFlat`) the full vectors are kept too, and a search
    /// re-ranks the codes' k × k_factor best by exact distance.
    Ivf { nlist: usize, hnsw_m: usize, payload: Payload, refine: bool },
    /// `HNSW{M},Flat` or `HNSW{M}_PQ{m}`: one HNSW graph over the base.
    Hnsw { m: usize, payload: Payload },
}

/// How vectors are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Raw float32 vectors.
    Flat,
    /// Product-quantized codes, `m` bytes per vector (8 bits per sub-quantizer).
    Pq { m: usize },
    /// `PQ{m}x4fs`: 4-bit codes (16 centroids per sub-quantizer), m / 2 bytes per vector,
    /// scanned 32 vectors at a time by in-register table look-ups (faiss's fast-scan). As in
    /// faiss, `x4fs` codes quantize the vectors themselves (one distance table per query serves
    /// every list) and `x4fsr` their residuals from the list's centroid (`residual`).
    PqFastScan { m: usize, residual: bool },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot parse factory string {input:?}: {reason} (for example \"IVF4096_HNSW32,PQ32\": nlist 4096, HNSW M 32, PQ with 32 bytes per vector)")]
pub struct SpecError {
    pub input: String,
    pub reason: String,
}

/// Largest nlist a factory string may ask for (2^24): far past the 2^20 lists a 10^9-vector
/// index uses, and small enough that every count of lists fits the format's u32 fields.
pub const MAX_NLIST: usize = 1 << 24;
/// HNSW M bounds: below 2 the level distribution (mL = 1/ln M) is undefined; above 256 a node's
/// links outgrow any benefit and the graph's memory explodes.
pub const MIN_HNSW_M: usize = 2;
pub const MAX_HNSW_M: usize = 256;
/// Largest PQ m (bytes per code); m must also divide the dimension.
pub const MAX_PQ_M: usize = 4096;

/// The number after `prefix` in `s`, checked against `lo..=hi`; `what` names it in errors.
fn number(s: &str, prefix: &str, what: &str, lo: usize, hi: usize) -> Result<Option<usize>, String> {
    let Some(digits) = s.strip_prefix(prefix) else { return Ok(None) };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match digits.parse::<usize>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
        _ => Err(format!("{what} {digits} in {s:?} is out of range: {lo} ..= {hi}")),
    }
}

impl FromStr for IndexSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |reason: String| SpecError { input: input.to_string(), reason };
        let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        let nlist_of = |p: &str| number(p, "IVF", "nlist", 1, MAX_NLIST).map_err(err);
        let hnsw_of = |p: &str| number(p, "HNSW", "HNSW M", MIN_HNSW_M, MAX_HNSW_M).map_err(err);
        let pq_of = |p: &str| number(p, "PQ", "PQ m", 1, MAX_PQ_M).map_err(err);
        let payload_of = |p: &str| -> Result<Payload, SpecError> {
            if p == "Flat" {
                Ok(Payload::Flat)
            } else if let Some(m) = pq_of(p)? {
                Ok(Payload::Pq { m })
            } else if let Some((pq, bits)) = p.split_once('x').filter(|(pq, _)| pq.starts_with("PQ")) {
                let m = pq_of(pq)?.ok_or_else(|| err(format!("expected PQ{{m}} before 'x' in {p:?}")))?;
                match bits {
                    "4fs" | "4fsr" if m % 2 == 0 => Ok(Payload::PqFastScan { m, residual: bits == "4fsr" }),
                    "4fs" | "4fsr" => Err(err(format!("PQ{m}x{bits} needs an even m: fast-scan pairs sub-quantizers"))),
                    "8" => Ok(Payload::Pq { m }),
                    "4" => Err(err(format!("4-bit PQ is scanned with fast-scan: write PQ{m}x4fs"))),
                    _ => Err(err(format!(
                        "{bits:?} bits per sub-quantizer is not supported: PQ{m} (8 bits), PQ{m}x4fs (4-bit fast-scan) or PQ{m}x4fsr (its residual form)"
                    ))),
                }
            } else {
                Err(err(format!("unknown storage {p:?}: expected PQ{{m}}")))
            }
        };
        let (s, refine) = match s.strip_suffix(",RFlat") {
            Some(rest) => (rest.to_string(), true),
            None => (s, false),
        };
        if refine && (s.ends_with(",Flat") || !s.contains(',') || !s.starts_with("IVF")) {
            return Err(err(
                "RFlat re-ranks PQ codes of an IVF index: IVF{nlist}_HNSW{M},PQ{m},RFlat or IVF{nlist}_HNSW{M},PQ{m}x4fs,RFlat"
                    .into(),
            ));
        }
        if let Some((coarse, payload)) = s.split_once(',') {
            let payload = payload_of(payload)?;
            if let Some((ivf, q)) = coarse.split_once('_') {
                let nlist =
                    nlist_of(ivf)?.ok_or_else(|| err(format!("expected IVF{{nlist}} before '_', found {ivf:?}")))?;
                let hnsw_m =
                    hnsw_of(q)?.ok_or_else(|| err(format!("the coarse quantizer must be HNSW{{M}}, found {q:?}")))?;
                return Ok(IndexSpec::Ivf { nlist, hnsw_m, payload, refine });
            }
            if let Some(m) = hnsw_of(coarse)? {
                if payload != Payload::Flat {
                    return Err(err("write HNSW{M}_PQ{m} for an HNSW graph over PQ codes".into()));
                }
                return Ok(IndexSpec::Hnsw { m, payload });
            }
            if coarse.starts_with("IVF") {
                return Err(err("quiver's IVF indexes use an HNSW coarse quantizer: IVF{nlist}_HNSW{M}".into()));
            }
            return Err(err(format!("expected IVF{{nlist}}_HNSW{{M}} before ',', found {coarse:?}")));
        }
        if let Some((h, pq)) = s.split_once('_') {
            let m = hnsw_of(h)?.ok_or_else(|| err("expected IVF{nlist}_HNSW{M},PQ{m}".into()))?;
            let pq_m = pq_of(pq)?.ok_or_else(|| err("expected IVF{nlist}_HNSW{M},PQ{m}".into()))?;
            return Ok(IndexSpec::Hnsw { m, payload: Payload::Pq { m: pq_m } });
        }
        Err(err("missing ',' between the coarse quantizer and the storage".into()))
    }
}

impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexSpec::Ivf { nlist, hnsw_m, payload, refine } => {
                write!(f, "IVF{nlist}_HNSW{hnsw_m},")?;
                match payload {
                    Payload::Flat => write!(f, "Flat")?,
                    Payload::Pq { m } => write!(f, "PQ{m}")?,
                    Payload::PqFastScan { m, residual } => write!(f, "PQ{m}x4fs{}", if *residual { "r" } else { "" })?,
                }
                if *refine {
                    write!(f, ",RFlat")?;
                }
                Ok(())
            }
            IndexSpec::Hnsw { m, payload: Payload::PqFastScan { m: pq, residual } } => {
                write!(f, "HNSW{m}_PQ{pq}x4fs{}", if *residual { "r" } else { "" })
            }
            IndexSpec::Hnsw { m, payload: Payload::Flat } => write!(f, "HNSW{m},Flat"),
            IndexSpec::Hnsw { m, payload: Payload::Pq { m: pq } } => write!(f, "HNSW{m}_PQ{pq}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_kinds_and_round_trips() {
        for s in [
            "IVF4096_HNSW32,PQ32",
            "HNSW32,Flat",
            "IVF1024_HNSW32,Flat",
            "HNSW32_PQ32",
            "IVF65536_HNSW16,PQ48",
            "IVF4096_HNSW32,PQ64x4fs",
            "IVF4096_HNSW32,PQ64x4fsr",
            "IVF4096_HNSW32,PQ32,RFlat",
            "IVF4096_HNSW32,PQ64x4fs,RFlat",
        ] {
            let spec: IndexSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "IVF4096_HNSW32,PQ32".parse::<IndexSpec>().unwrap(),
            IndexSpec::Ivf { nlist: 4096, hnsw_m: 32, payload: Payload::Pq { m: 32 }, refine: false }
        );
        assert_eq!(
            "IVF64_HNSW32,PQ8x4fsr".parse::<IndexSpec>().unwrap(),
            IndexSpec::Ivf {
                nlist: 64,
                hnsw_m: 32,
                payload: Payload::PqFastScan { m: 8, residual: true },
                refine: false
            }
        );
        assert_eq!(
            "IVF4096_HNSW32,PQ32x8".parse::<IndexSpec>().unwrap().to_string(),
            "IVF4096_HNSW32,PQ32",
            "x8 is the default width, said out loud"
        );
        for (s, says) in [
            ("IVF4096_HNSW32,PQ63x4fs", "even m"),
            ("IVF4096_HNSW32,PQ63x4fsr", "even m"),
            ("IVF4096_HNSW32,PQ64x4", "write PQ64x4fs"),
            ("IVF4096_HNSW32,PQ64x6", "not supported"),
            ("IVF4096_HNSW32,PQx4fs", "expected PQ{m}"),
            ("IVF4096_HNSW32,Flat,RFlat", "re-ranks PQ codes"),
            ("HNSW32,Flat,RFlat", "re-ranks PQ codes"),
            ("IVF4096_HNSW32,PQ32,RFlat,RFlat", "unknown storage"),
        ] {
            let e = s.parse::<IndexSpec>().unwrap_err();
            assert!(e.reason.contains(says), "{s}: {}", e.reason);
        }
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        for s in [
            "",
            "IVF0_HNSW32,PQ32",
            "IVF4096,PQ32",
            "IVF4096_HNSW32,PQ32x4",
            "IVF4096_HNSW32,SQ8",
            "PQ32",
            "HNSW32,PQ8",
        ] {
            let e = s.parse::<IndexSpec>().unwrap_err();
            assert!(!e.reason.is_empty(), "{s}");
        }
    }

    /// Numbers out of range name the parameter and its bounds instead of a shape the input
    /// already has ("expected IVF{nlist}" for IVF0 was the old message).
    #[test]
    fn out_of_range_numbers_name_the_parameter() {
        for (s, want) in [
            ("IVF0_HNSW32,PQ32", "nlist 0"),
            ("IVF99999999999999999999_HNSW32,PQ32", "nlist 99999999999999999999"),
            ("IVF16777217_HNSW32,PQ32", "1 ..= 16777216"),
            ("IVF16_HNSW1,PQ4", "HNSW M 1"),
            ("IVF16_HNSW0,PQ4", "HNSW M 0"),
            ("HNSW1,Flat", "HNSW M 1"),
            ("IVF16_HNSW32,PQ0", "PQ m 0"),
        ] {
            let e = s.parse::<IndexSpec>().unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
        let e = "IVF16_HNSW32,SQ8".parse::<IndexSpec>().unwrap_err().to_string();
        assert!(!e.contains("HNSW32,Flat"), "the error suggests only kinds that build: {e}");
    }
}
