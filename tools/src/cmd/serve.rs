//! `quiver serve`: the HTTP server of the `quiver-server` crate, configured from flags.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::CmdResult;
use crate::args::{self, usage};

#[derive(clap::Args)]
pub struct Args {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Address to listen on. Anything beyond loopback needs --token-file.
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: SocketAddr,
    /// Search threads (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = args::threads)]
    threads: usize,
    /// RAM for a cache of list extents (512MiB, 2GiB, ...; 0 = none), as for search.
    #[arg(long, default_value = "0", value_parser = args::size_or_zero)]
    cache_bytes: u64,
    /// A file holding the token every request must carry as 'Authorization: Bearer <token>'
    /// (compared in constant time; /healthz needs none).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Largest request body.
    #[arg(long, default_value = "8MiB", value_parser = args::size)]
    max_body: u64,
    /// Most query vectors in one request.
    #[arg(long, default_value_t = 1024, value_parser = args::count)]
    max_batch: usize,
    /// Largest k.
    #[arg(long, default_value_t = 1024, value_parser = args::count)]
    max_k: usize,
    /// Requests admitted at once (searching, or waiting for a search thread); the next gets
    /// 503 with Retry-After, so memory does not grow with the offered load.
    #[arg(long, default_value_t = 64, value_parser = args::count)]
    queue: usize,
    /// Seconds a request may take before it gets 504.
    #[arg(long, default_value_t = 30, value_parser = args::count)]
    timeout_s: usize,
}

/// Serves until SIGTERM or Ctrl-C (requests in flight are finished first); SIGHUP or
/// POST /v1/reload moves to the newest generation.
pub fn run(a: Args, _out: &mut dyn Write) -> CmdResult {
    let token = match &a.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| args::flag_error("--token-file", e))?.trim().to_string();
            if t.is_empty() {
                return usage(format!("--token-file {}: the file is empty", p.display()));
            }
            Some(t)
        }
        None => None,
    };
    if let Err(e) = quiver_server::check_bind(&a.addr, token.as_deref()) {
        return usage(e);
    }
    let config = quiver_server::Config {
        index: a.index,
        addr: a.addr,
        threads: a.threads,
        open: quiver::OpenOptions { cache_bytes: a.cache_bytes, ..Default::default() },
        token,
        limits: quiver_server::Limits {
            body_bytes: usize::try_from(a.max_body).unwrap_or(usize::MAX),
            max_batch: a.max_batch,
            max_k: a.max_k,
            queue: a.queue,
            timeout: Duration::from_secs(a.timeout_s as u64),
        },
    };
    quiver_server::run(config).map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })
}
