//! The library's `Progress` callback drawn as indicatif bars on a terminal, and as plain lines
//! every few seconds when stderr is a pipe or a file (CI logs, `2> build.log`).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

pub struct Reporter {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
    plain: Mutex<Plain>,
}

struct Plain {
    stage: String,
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Reporter {
            quiet,
            bar: Mutex::new(None),
            plain: Mutex::new(Plain { stage: String::new(), total: 0, done: 0, started: now, last: now }),
        }
    }

    fn terminal() -> bool {
        std::io::stderr().is_terminal()
    }
}

impl quiver::Progress for Reporter {
    fn begin(&self, stage: &str, total: u64) {
        if self.quiet {
            return;
        }
        if Self::terminal() {
            let bar = if total > 0 {
                let b = ProgressBar::new(total);
                b.set_style(
                    ProgressStyle::with_template("{msg:40} [{bar:30}] {human_pos}/{human_len} {rate} ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .with_key("rate", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0}/s", st.per_sec());
                        })
                        .progress_chars("=> "),
                );
                b
            } else {
                let b = ProgressBar::new_spinner();
                b.enable_steady_tick(Duration::from_millis(200));
                b
            };
            bar.set_message(stage.to_string());
            *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
        } else {
            let mut p = self.plain.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            *p = Plain { stage: stage.to_string(), total, done: 0, started: now, last: now };
            eprintln!("[quiver] {stage} ...");
        }
    }

    fn advance(&self, n: u64) {
        if self.quiet {
            return;
        }
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            b.inc(n);
            return;
        }
        let mut p = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        p.done += n;
        if p.last.elapsed() >= PLAIN_EVERY {
            p.last = Instant::now();
            let secs = p.started.elapsed().as_secs_f64();
            let rate = p.done as f64 / secs.max(1e-9);
            let eta = if p.total > p.done && rate > 0.0 {
                format!(", ETA {:.0} s", (p.total - p.done) as f64 / rate)
            } else {
                String::new()
            };
            eprintln!("[quiver] {}: {}/{} ({:.0}/s{eta})", p.stage, p.done, p.total, rate);
        }
    }

    fn end(&self) {
        if self.quiet {
            return;
        }
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
            eprintln!("[quiver] {} done in {:.1} s", b.message(), b.elapsed().as_secs_f64());
            return;
        }
        let p = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("[quiver] {} done in {:.1} s", p.stage, p.started.elapsed().as_secs_f64());
    }
}
