//! A timeline picture of a run: one lane per node coloured by what its PostgreSQL was
//! doing (accepting writes, standby, stopped, machine down), the faults as bands below,
//! acknowledged writes per time slice, and the instant of any violation.

use crate::world::{Shown, World};
use std::fmt::Write as _;

const W: f64 = 1200.0;
const LEFT: f64 = 70.0;
const LANE: f64 = 26.0;

fn x(t: u64, end: u64) -> f64 {
    LEFT + (W - LEFT - 10.0) * t as f64 / end.max(1) as f64
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the run recorded in `w` as an SVG document.
pub fn render(w: &World) -> String {
    let end = w.now.max(1);
    let n = w.nodes.len();
    let faults_top = 40.0 + n as f64 * LANE + 30.0;
    let fault_rows = w.fault_log.len().min(40);
    let acks_top = faults_top + fault_rows as f64 * 12.0 + 30.0;
    let height = acks_top + 90.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="10" y="18" font-size="13" font-weight="bold">{}</text>"#,
        esc(&format!("{} — {}", w.p.describe(), if w.check.ok() { "OK" } else { "VIOLATION" }))
    );
    // Time axis.
    let step = [10_000u64, 30_000, 60_000, 300_000, 600_000, 1_800_000]
        .into_iter()
        .find(|s| end / s <= 12)
        .unwrap_or(3_600_000);
    let mut t = 0;
    while t <= end {
        let xx = x(t, end);
        let _ = write!(s, r##"<line x1="{xx}" y1="30" x2="{xx}" y2="{}" stroke="#eee"/>"##, height - 20.0);
        let _ =
            write!(s, r##"<text x="{xx}" y="{}" text-anchor="middle" fill="#666">{}s</text>"##, height - 6.0, t / 1000);
        t += step;
    }
    // Lanes.
    for i in 0..n {
        let y = 40.0 + i as f64 * LANE;
        let _ = write!(s, r#"<text x="10" y="{}">{}</text>"#, y + 15.0, esc(&w.nodes[i].name));
        let mut changes: Vec<(u64, Shown)> =
            w.timeline.iter().filter(|(_, j, _)| *j == i).map(|(t, _, sh)| (*t, *sh)).collect();
        changes.insert(0, (0, Shown::Stopped));
        for (k, (t0, shown)) in changes.iter().enumerate() {
            let t1 = changes.get(k + 1).map_or(end, |c| c.0);
            let (color, label) = match shown {
                Shown::Primary => ("#d62728", "accepts writes"),
                Shown::Replica => ("#6baed6", "standby"),
                Shown::Stopped => ("#d9d9d9", "stopped"),
                Shown::Down => ("#252525", "machine down"),
            };
            let (x0, x1) = (x(*t0, end), x(t1, end));
            let _ = write!(
                s,
                r#"<rect x="{x0}" y="{y}" width="{}" height="{}" fill="{color}"><title>{} {label} {}–{} ms</title></rect>"#,
                (x1 - x0).max(0.5),
                LANE - 6.0,
                esc(&w.nodes[i].name),
                t0,
                t1
            );
        }
    }
    // Legend.
    let ly = 40.0 + n as f64 * LANE + 4.0;
    for (k, (color, label)) in [
        ("#d62728", "accepts writes"),
        ("#6baed6", "standby"),
        ("#d9d9d9", "stopped"),
        ("#252525", "machine down"),
        ("#ff7f0e", "fault"),
    ]
    .iter()
    .enumerate()
    {
        let lx = LEFT + k as f64 * 130.0;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{label}</text>"#,
            lx + 16.0,
            ly + 10.0
        );
    }
    // Faults.
    let _ = write!(s, r#"<text x="10" y="{}">faults</text>"#, faults_top - 6.0);
    for (k, (t0, t1, what)) in w.fault_log.iter().take(fault_rows).enumerate() {
        let y = faults_top + k as f64 * 12.0;
        let (x0, x1) = (x(*t0, end), x((*t1).max(*t0 + end / 400), end));
        let _ = write!(
            s,
            r##"<rect x="{x0}" y="{y}" width="{}" height="9" fill="#ff7f0e" opacity="0.8"><title>{}</title></rect><text x="{}" y="{}" fill="#555" font-size="9">{}</text>"##,
            x1 - x0,
            esc(what),
            x1 + 3.0,
            y + 8.0,
            esc(what)
        );
    }
    // Acknowledged writes per slice.
    let slices = 200usize;
    let mut counts = vec![0u64; slices];
    for (second, n) in w.acks_per_second.iter().enumerate() {
        counts[((second as u64 * 1_000 * slices as u64) / (end + 1)).min(slices as u64 - 1) as usize] += u64::from(*n);
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let _ = write!(s, r#"<text x="10" y="{}">acked writes</text>"#, acks_top + 30.0);
    for (k, c) in counts.iter().enumerate() {
        let h = 50.0 * *c as f64 / max as f64;
        let x0 = x(k as u64 * end / slices as u64, end);
        let _ = write!(
            s,
            r##"<rect x="{x0}" y="{}" width="{}" height="{h}" fill="#2ca02c"/>"##,
            acks_top + 50.0 - h,
            (W - LEFT) / slices as f64
        );
    }
    // Violations.
    for (t, what) in &w.check.violations {
        let xx = x(*t, end);
        let _ = write!(
            s,
            r##"<line x1="{xx}" y1="30" x2="{xx}" y2="{}" stroke="red" stroke-width="2"><title>{}</title></line><text x="{}" y="36" fill="red">{}</text>"##,
            height - 20.0,
            esc(what),
            xx + 3.0,
            esc(what.split(':').next().unwrap_or(""))
        );
    }
    s.push_str("</svg>\n");
    s
}
