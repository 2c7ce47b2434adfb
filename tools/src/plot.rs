//! Charts as SVG text: lines and points on linear or log axes, and bubbles whose area stands
//! for a size. Written here rather than with a plotting crate: the charts are few and simple,
//! SVG text needs no font at draw time (the viewer lays it out), and the output is the same
//! bytes on every machine, which the tests read back.

use std::fmt::Write;

/// One named series of points; `radii` makes them bubbles (radius in pixels per point).
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    pub radii: Option<Vec<f64>>,
    /// Drawn beside each point (bubble charts).
    pub labels: Vec<String>,
    /// Draw a line through the points (in the order given).
    pub line: bool,
    /// Palette entry: series of one thing (one factory, two systems) share a colour.
    pub color: usize,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
    pub series: Vec<Series>,
}

const W: f64 = 960.0;
const H: f64 = 600.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 300.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 10] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/// An axis: its range in plot units (log10 where `log`) and where its ticks go.
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>, log: bool) -> Axis {
        let vals: Vec<f64> = values.filter(|v| v.is_finite() && (!log || *v > 0.0)).collect();
        let (mut lo, mut hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if vals.is_empty() {
            (lo, hi) = if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            // A little room past the extreme points, so that bubbles and markers stay inside.
            let (l, h) = ((lo.log10() - 0.1).floor(), (hi.log10() + 0.1).ceil());
            Axis { log, lo: l, hi: h.max(l + 1.0) }
        } else {
            let pad = ((hi - lo) * 0.1).max(1e-9);
            Axis { log, lo: lo - pad, hi: hi + pad }
        }
    }

    fn unit(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    }

    /// Position in 0 ..= 1 along the axis.
    fn frac(&self, v: f64) -> f64 {
        (self.unit(v) - self.lo) / (self.hi - self.lo)
    }

    /// Tick values: 1, 2, 5 per decade on a log axis, about six round steps on a linear one.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut t = Vec::new();
            for e in self.lo as i32..=self.hi as i32 {
                for m in [1.0, 2.0, 5.0] {
                    let v = m * 10f64.powi(e);
                    if v.log10() <= self.hi + 1e-9 {
                        t.push(v);
                    }
                }
            }
            t
        } else {
            let raw = (self.hi - self.lo) / 6.0;
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw);
            let mut v = (self.lo / step).ceil() * step;
            let mut t = Vec::new();
            while v <= self.hi + 1e-12 {
                t.push(v);
                v += step;
            }
            t
        }
    }
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.001 {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Escapes text for an SVG text node or attribute.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Chart {
    pub fn to_svg(&self) -> String {
        let pts = || self.series.iter().flat_map(|s| s.points.iter());
        let (xa, ya) = (Axis::new(pts().map(|p| p.0), self.x_log), Axis::new(pts().map(|p| p.1), self.y_log));
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let px = |v: f64| LEFT + xa.frac(v) * pw;
        let py = |v: f64| TOP + (1.0 - ya.frac(v)) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            esc(&self.title)
        );
        for t in xa.ticks() {
            let x = px(t);
            let _ =
                writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/>"##, TOP + ph);
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + ph + 18.0,
                fmt_tick(t)
            );
        }
        for t in ya.ticks() {
            let y = py(t);
            let _ =
                writeln!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/>"##, LEFT + pw);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                fmt_tick(t)
            );
        }
        let _ = writeln!(s, r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 15.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        for (i, ser) in self.series.iter().enumerate() {
            let c = COLORS[ser.color % COLORS.len()];
            let dash = if ser.dashed { r#" stroke-dasharray="6 4""# } else { "" };
            if ser.line && ser.points.len() > 1 {
                let path: Vec<String> = ser.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"#,
                    path.join(" ")
                );
            }
            for (j, &(x, y)) in ser.points.iter().enumerate() {
                let r = ser.radii.as_ref().and_then(|r| r.get(j)).copied().unwrap_or(3.0);
                let fill = if ser.radii.is_some() {
                    format!(r#"fill="{c}" fill-opacity="0.35""#)
                } else {
                    format!(r#"fill="{c}""#)
                };
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="{r:.1}" {fill} stroke="{c}"{dash}/>"#,
                    px(x),
                    py(y)
                );
                if let Some(label) = ser.labels.get(j) {
                    let _ =
                        writeln!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, px(x) + r + 3.0, py(y) + 4.0, esc(label));
                }
            }
            let ly = TOP + 10.0 + 20.0 * i as f64;
            let lx = LEFT + pw + 15.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2"{dash}/>"#,
                lx + 24.0
            );
            let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 30.0, ly + 4.0, esc(&ser.name));
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_place_values_and_ticks_in_range() {
        let a = Axis::new([0.02, 0.5].into_iter(), true);
        assert_eq!((a.lo, a.hi), (-2.0, 0.0));
        assert!((a.frac(0.1) - 0.5).abs() < 1e-12);
        assert_eq!(Axis::new([0.9].into_iter(), true).hi, 1.0, "room past a point near a decade");
        assert!(a.ticks().contains(&0.05));
        let l = Axis::new([0.5, 0.95].into_iter(), false);
        assert!(l.ticks().iter().all(|&t| t >= l.lo && t <= l.hi));
        assert_eq!(fmt_tick(0.25), "0.25");
        assert_eq!(esc("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
