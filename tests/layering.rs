//! The one-way dependency rule, checked on the source: algorithms know no files, the format
//! knows no algorithms, io knows neither, input reads user files only. Only the engine (store,
//! build, search, verify) and lib.rs may import across layers.

use std::path::{Path, PathBuf};

const ALGORITHMS: &[&str] =
    &["distance", "topk", "kmeans", "pq", "codec", "hnsw", "ivf", "spec", "flat", "synthetic", "rng"];
const ENGINE: &[&str] = &["store", "build", "search", "verify", "error"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/pq/scan.rs` -> `pq`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Crate modules a file imports (`use crate::x`, `crate::x::` paths).
fn imports(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            v.push(name);
        }
    }
    v
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut violations = Vec::new();
    for f in &all {
        let module = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        for dep in imports(&text) {
            let forbidden = if ALGORITHMS.contains(&module.as_str()) {
                !ALGORITHMS.contains(&dep.as_str())
            } else if module == "format" {
                dep != "format"
            } else if module == "io" {
                dep != "io"
            } else if module == "input" {
                // Output files are published through io's durable rename.
                dep != "input" && dep != "io"
            } else {
                false
            };
            if forbidden {
                violations.push(format!("{} ({module}) imports crate::{dep}", f.display()));
            }
        }
        assert!(
            module == "lib"
                || ALGORITHMS.contains(&module.as_str())
                || ENGINE.contains(&module.as_str())
                || ["format", "io", "input"].contains(&module.as_str()),
            "{} is in no layer: add it to tests/layering.rs",
            f.display()
        );
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}
