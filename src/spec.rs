//! faiss's index factory grammar, parsed in one place: `IVF4096_HNSW32,PQ32`, `HNSW32,Flat`,
//! `IVF4096_HNSW32,Flat`, `HNSW32_PQ32`. `Display` writes the canonical string back.

use std::fmt;
use std::str::FromStr;

/// What a factory string asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexSpec {
    /// `IVF{nlist}_HNSW{M},{payload}`: inverted lists with an HNSW coarse quantizer.
    Ivf { nlist: usize, hnsw_m: usize, payload: Payload },
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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot parse factory string {input:?}: {reason} (examples: \"IVF4096_HNSW32,PQ32\", \"HNSW32,Flat\", \"IVF1024_HNSW32,Flat\", \"HNSW32_PQ32\")")]
pub struct SpecError {
    pub input: String,
    pub reason: String,
}

fn number(s: &str, prefix: &str) -> Option<usize> {
    s.strip_prefix(prefix)?.parse().ok().filter(|&v| v > 0)
}

impl FromStr for IndexSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |reason: &str| SpecError { input: input.to_string(), reason: reason.to_string() };
        let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        let payload_of = |p: &str| -> Result<Payload, SpecError> {
            if p == "Flat" {
                Ok(Payload::Flat)
            } else if let Some(m) = number(p, "PQ") {
                Ok(Payload::Pq { m })
            } else if p.starts_with("PQ") && p.contains('x') {
                Err(err("only 8-bit PQ is supported (PQ{m}, not PQ{m}x{nbits})"))
            } else {
                Err(err(&format!("unknown storage {p:?}: expected Flat or PQ{{m}}")))
            }
        };
        if let Some((coarse, payload)) = s.split_once(',') {
            let payload = payload_of(payload)?;
            if let Some((ivf, q)) = coarse.split_once('_') {
                let nlist = number(ivf, "IVF").ok_or_else(|| err("expected IVF{nlist} before '_'"))?;
                let hnsw_m = number(q, "HNSW").ok_or_else(|| err("the coarse quantizer must be HNSW{M}"))?;
                return Ok(IndexSpec::Ivf { nlist, hnsw_m, payload });
            }
            if let Some(m) = number(coarse, "HNSW") {
                if payload != Payload::Flat {
                    return Err(err("write HNSW{M}_PQ{m} for an HNSW graph over PQ codes"));
                }
                return Ok(IndexSpec::Hnsw { m, payload });
            }
            if coarse.starts_with("IVF") {
                return Err(err("quiver's IVF indexes use an HNSW coarse quantizer: IVF{nlist}_HNSW{M}"));
            }
            return Err(err("expected IVF{nlist}_HNSW{M} or HNSW{M} before ','"));
        }
        if let Some((h, pq)) = s.split_once('_') {
            let m = number(h, "HNSW").ok_or_else(|| err("expected HNSW{M}_PQ{m}"))?;
            let pq_m = number(pq, "PQ").ok_or_else(|| err("expected HNSW{M}_PQ{m}"))?;
            return Ok(IndexSpec::Hnsw { m, payload: Payload::Pq { m: pq_m } });
        }
        Err(err("missing ',' between the coarse structure and the storage"))
    }
}

impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexSpec::Ivf { nlist, hnsw_m, payload: Payload::Flat } => write!(f, "IVF{nlist}_HNSW{hnsw_m},Flat"),
            IndexSpec::Ivf { nlist, hnsw_m, payload: Payload::Pq { m } } => write!(f, "IVF{nlist}_HNSW{hnsw_m},PQ{m}"),
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
        for s in ["IVF4096_HNSW32,PQ32", "HNSW32,Flat", "IVF1024_HNSW32,Flat", "HNSW32_PQ32", "IVF65536_HNSW16,PQ48"] {
            let spec: IndexSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "IVF4096_HNSW32,PQ32".parse::<IndexSpec>().unwrap(),
            IndexSpec::Ivf { nlist: 4096, hnsw_m: 32, payload: Payload::Pq { m: 32 } }
        );
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
}
