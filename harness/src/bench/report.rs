/*!
Trend report over the history: one SVG chart per benchmark and machine, quality charts, and a
markdown and an HTML page that link them, with detected change points listed and marked.

A *series* is the entries of one machine (equal fingerprints), in history order; entries of other
machines are never drawn on the same axes. Each chart shows, per entry, the median (dot, joined by
a line) and the interquartile range (bar); entries recorded with planted faults are drawn in orange.

Benchmarks with counts get a second chart beside the time chart: the instructions per entry, with
the count gate's changes ([`crate::bench::compare::decide_counts`]) marked the same way.

A *change point* is an entry the gate ([`crate::bench::stats::decide`], with the calibrated
threshold when there is one) judges slower or faster than the previous entry of its series; it is
marked with a red dashed line and the change. Using the gate itself keeps the report and `compare`
in agreement: a step the chart marks is one compare would have flagged.

SVG is written by hand with fixed precision, so the same history always gives the same bytes.
*/

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::calibrate::{Thresholds, UNCALIBRATED_THRESHOLD};
use super::compare::{decide_counts, format_ns, percent, DEFAULT_COUNT_THRESHOLD};
use super::counts::GATED_METRIC;
use super::fingerprint::Fingerprint;
use super::history::{utc_readable, Entry};
use super::quality;
use super::stats::{decide, quantile, Verdict, DEFAULT_ALPHA};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 350.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 90.0;

/// One point of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Label under the axis (commit or label).
    pub label: String,
    /// The value drawn as a dot.
    pub value: f64,
    /// Interquartile range, drawn as a bar.
    pub spread: Option<(f64, f64)>,
    /// Recorded with planted faults.
    pub faulted: bool,
}

/// A detected change between two consecutive points.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangePoint {
    /// Index of the point after the change.
    pub index: usize,
    /// Relative change of the median.
    pub change: f64,
    /// Slower or faster.
    pub verdict: Verdict,
}

/// How values are written on the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds, written with a time unit.
    Nanoseconds,
    /// Plain numbers.
    Plain,
}

fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Nanoseconds => format_ns(v),
        Unit::Plain if v.abs() >= 1000.0 => format!("{v:.0}"),
        Unit::Plain => format!("{v:.3}"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG line chart of `points` with `changes` marked.
pub fn chart_svg(
    title: &str,
    subtitle: &str,
    points: &[Point],
    changes: &[ChangePoint],
    unit: Unit,
) -> String {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in points {
        for v in [Some(p.value), p.spread.map(|s| s.0), p.spread.map(|s| s.1)]
            .into_iter()
            .flatten()
        {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < hi.abs() * 1e-6 + 1e-12 {
        let pad = hi.abs().max(1.0) * 0.05;
        (lo, hi) = (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |i: usize| {
        if points.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (points.len() - 1) as f64
        }
    };
    let y_of = |v: f64| TOP + plot_h * (1.0 - (v - lo) / (hi - lo));

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="31" fill="#555">{}</text>"##,
        escape(subtitle)
    );
    // Axes and horizontal grid with five labelled ticks.
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&format_value(v, unit))
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + plot_h,
        TOP + plot_h,
        WIDTH - RIGHT,
        TOP + plot_h
    );
    // Change points under the data.
    for c in changes {
        let x = if c.index == 0 {
            x_of(0)
        } else {
            (x_of(c.index - 1) + x_of(c.index)) / 2.0
        };
        // Labels near the right edge go to the left of their line, so they stay on the canvas.
        let (label_x, anchor) = if x > LEFT + plot_w * 0.7 {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let _ = writeln!(
            s,
            r##"<line class="change-point" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#d62728" stroke-dasharray="4 3"/><text x="{label_x:.1}" y="{:.1}" text-anchor="{anchor}" fill="#d62728">{} {}</text>"##,
            TOP + plot_h,
            TOP + 10.0,
            escape(&percent(c.change)),
            c.verdict
        );
    }
    // Interquartile bars, the median line, the median dots.
    for (i, p) in points.iter().enumerate() {
        if let Some((a, b)) = p.spread {
            if a.is_finite() && b.is_finite() {
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#9ecae1" stroke-width="5"/>"##,
                    y_of(a),
                    y_of(b),
                    x = x_of(i)
                );
            }
        }
    }
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.value.is_finite())
        .map(|(i, p)| format!("{:.1},{:.1}", x_of(i), y_of(p.value)))
        .collect();
    if path.len() > 1 {
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
            path.join(" ")
        );
    }
    let label_every = points.len().div_ceil(12).max(1);
    for (i, p) in points.iter().enumerate() {
        let x = x_of(i);
        if p.value.is_finite() {
            let colour = if p.faulted { "#ff7f0e" } else { "#1f77b4" };
            let _ = writeln!(
                s,
                r#"<circle class="point" cx="{x:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{}: {}</title></circle>"#,
                y_of(p.value),
                escape(&p.label),
                escape(&format_value(p.value, unit))
            );
        }
        if i % label_every == 0 {
            let y = TOP + plot_h + 14.0;
            let _ = writeln!(
                s,
                r##"<text x="{x:.1}" y="{y:.1}" text-anchor="end" fill="#333" transform="rotate(-30 {x:.1} {y:.1})">{}</text>"##,
                escape(&p.label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// A label for an entry on a chart axis: its label (or commit) and the time of day it was
/// recorded, so that repeated labels stay apart.
fn point_label(e: &Entry) -> String {
    let name = match &e.build.label {
        Some(l) => l.clone(),
        None => e.build.short_commit(),
    };
    let hhmm = utc_readable(e.recorded_at);
    format!("{name} {}", hhmm.get(11..).unwrap_or(""))
}

/// Change points of one benchmark's series (entry indices, in order).
pub fn change_points(
    entries: &[Entry],
    series: &[usize],
    id: &str,
    thresholds: Option<&Thresholds>,
) -> Vec<ChangePoint> {
    let threshold = thresholds
        .and_then(|t| t.get(id))
        .unwrap_or(UNCALIBRATED_THRESHOLD);
    let with: Vec<(usize, &Vec<f64>)> = series
        .iter()
        .enumerate()
        .filter_map(|(k, &i)| Some((k, &entries[i].benchmarks.get(id)?.samples_ns)))
        .collect();
    with.windows(2)
        .filter_map(|w| {
            let d = decide(w[0].1, w[1].1, threshold, DEFAULT_ALPHA);
            matches!(d.verdict, Verdict::Slower | Verdict::Faster).then_some(ChangePoint {
                index: w[1].0,
                change: d.change,
                verdict: d.verdict,
            })
        })
        .collect()
}

/// A file name made of `id` (letters, digits, `-`, `_`; others become `_`).
pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSummary {
    /// Charts written.
    pub charts: usize,
    /// Change points found.
    pub change_points: usize,
}

struct Section {
    machine: String,
    charts: Vec<(String, String)>,
    changes: Vec<(String, String, String, String)>,
    quality_charts: Vec<(String, String)>,
}

/// Writes `index.md`, `index.html` and `charts/*.svg` under `out` (each file atomically).
pub fn write_report(
    entries: &[Entry],
    thresholds: Option<&Thresholds>,
    out: &Path,
) -> std::io::Result<ReportSummary> {
    let mut machines: Vec<&Fingerprint> = Vec::new();
    for e in entries {
        if !machines.contains(&&e.fingerprint) {
            machines.push(&e.fingerprint);
        }
    }
    let mut sections = Vec::new();
    let mut summary = ReportSummary {
        charts: 0,
        change_points: 0,
    };
    for (m, fingerprint) in machines.iter().enumerate() {
        let series: Vec<usize> = (0..entries.len())
            .filter(|&i| &entries[i].fingerprint == *fingerprint)
            .collect();
        let thresholds = thresholds.filter(|t| &t.fingerprint == *fingerprint);
        let ids: BTreeSet<&String> = series
            .iter()
            .flat_map(|&i| entries[i].benchmarks.keys())
            .collect();
        let mut section = Section {
            machine: fingerprint.summary(),
            charts: Vec::new(),
            changes: Vec::new(),
            quality_charts: Vec::new(),
        };
        for id in ids {
            let points: Vec<Point> = series
                .iter()
                .filter_map(|&i| {
                    let r = entries[i].benchmarks.get(id)?;
                    Some(Point {
                        label: point_label(&entries[i]),
                        value: quantile(&r.samples_ns, 0.5)?,
                        spread: quantile(&r.samples_ns, 0.25).zip(quantile(&r.samples_ns, 0.75)),
                        faulted: !entries[i].build.faults.is_empty(),
                    })
                })
                .collect();
            let changes = change_points(entries, &series, id, thresholds);
            // Indices of `changes` count entries of the series that hold this benchmark.
            let holders: Vec<usize> = series
                .iter()
                .copied()
                .filter(|&i| entries[i].benchmarks.contains_key(id))
                .collect();
            let chart_changes: Vec<ChangePoint> = changes
                .iter()
                .map(|c| ChangePoint {
                    index: holders
                        .iter()
                        .position(|&i| i == series[c.index])
                        .unwrap_or(0),
                    ..c.clone()
                })
                .collect();
            for c in &changes {
                let e = &entries[series[c.index]];
                section.changes.push((
                    id.clone(),
                    e.display_name(),
                    percent(c.change),
                    c.verdict.to_string(),
                ));
            }
            summary.change_points += changes.len();
            if !points.is_empty() {
                let file = format!("charts/m{m}-{}.svg", file_stem(id));
                let svg = chart_svg(
                    id,
                    &section.machine,
                    &points,
                    &chart_changes,
                    Unit::Nanoseconds,
                );
                crate::artifacts::write_atomically(
                    &out.join(&file),
                    svg.as_bytes(),
                    crate::artifacts::MissingDirs::Create,
                )?;
                summary.charts += 1;
                section.charts.push((id.clone(), file));
            }
            // The counts of the same benchmark, beside its times, with the count gate's changes.
            let counted: Vec<(usize, u64)> = series
                .iter()
                .filter_map(|&i| {
                    let n = entries[i].benchmarks.get(id)?.counts.get(GATED_METRIC)?;
                    Some((i, *n))
                })
                .collect();
            if !counted.is_empty() {
                let points: Vec<Point> = counted
                    .iter()
                    .map(|&(i, n)| Point {
                        label: point_label(&entries[i]),
                        value: n as f64,
                        spread: None,
                        faulted: !entries[i].build.faults.is_empty(),
                    })
                    .collect();
                let threshold = thresholds
                    .and_then(|t| t.count_threshold(id))
                    .unwrap_or(DEFAULT_COUNT_THRESHOLD);
                let mut count_changes = Vec::new();
                for (k, w) in counted.windows(2).enumerate() {
                    let same_tool = entries[w[0].0].counts.as_ref().map(|c| &c.tool)
                        == entries[w[1].0].counts.as_ref().map(|c| &c.tool);
                    let (change, verdict) = decide_counts(w[0].1, w[1].1, threshold);
                    if same_tool && verdict != Verdict::Same {
                        count_changes.push(ChangePoint {
                            index: k + 1,
                            change,
                            verdict,
                        });
                        section.changes.push((
                            format!("{id} ({GATED_METRIC})"),
                            entries[w[1].0].display_name(),
                            percent(change),
                            format!("{verdict} (count gate)"),
                        ));
                    }
                }
                summary.change_points += count_changes.len();
                let title = format!("{id}: {GATED_METRIC}");
                let file = format!("charts/m{m}-{}-{GATED_METRIC}.svg", file_stem(id));
                let svg = chart_svg(
                    &title,
                    &section.machine,
                    &points,
                    &count_changes,
                    Unit::Plain,
                );
                crate::artifacts::write_atomically(
                    &out.join(&file),
                    svg.as_bytes(),
                    crate::artifacts::MissingDirs::Create,
                )?;
                summary.charts += 1;
                section.charts.push((title, file));
            }
        }
        // Quality metrics over the same series.
        let graphs: BTreeSet<&String> = series
            .iter()
            .flat_map(|&i| entries[i].quality.iter().map(|q| &q.graph))
            .collect();
        for graph in graphs {
            for (k, metric) in ["energy", "distance_ratio", "steps_to_converge"]
                .iter()
                .enumerate()
            {
                let points: Vec<Point> = series
                    .iter()
                    .filter_map(|&i| {
                        let q = entries[i].quality.iter().find(|q| &q.graph == graph)?;
                        Some(Point {
                            label: point_label(&entries[i]),
                            value: quality::metrics(q)[k].1.unwrap_or(f64::NAN),
                            spread: None,
                            faulted: !entries[i].build.faults.is_empty(),
                        })
                    })
                    .collect();
                let title = format!("quality: {graph} {metric}");
                let file = format!("charts/m{m}-quality-{}-{metric}.svg", file_stem(graph));
                let svg = chart_svg(&title, &section.machine, &points, &[], Unit::Plain);
                crate::artifacts::write_atomically(
                    &out.join(&file),
                    svg.as_bytes(),
                    crate::artifacts::MissingDirs::Create,
                )?;
                summary.charts += 1;
                section.quality_charts.push((title, file));
            }
        }
        sections.push(section);
    }
    crate::artifacts::write_atomically(
        &out.join("index.md"),
        markdown(entries, &sections).as_bytes(),
        crate::artifacts::MissingDirs::Create,
    )?;
    crate::artifacts::write_atomically(
        &out.join("index.html"),
        html(entries, &sections).as_bytes(),
        crate::artifacts::MissingDirs::Create,
    )?;
    Ok(summary)
}

fn entry_rows(entries: &[Entry]) -> Vec<[String; 6]> {
    entries
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                utc_readable(e.recorded_at),
                e.build.short_commit(),
                e.build.label.clone().unwrap_or_default(),
                e.build.faults.join(", "),
                e.benchmarks.len().to_string(),
            ]
        })
        .collect()
}

const ENTRY_HEADER: [&str; 6] = [
    "entry",
    "recorded (UTC)",
    "commit",
    "label",
    "faults",
    "benchmarks",
];
const CHANGE_HEADER: [&str; 4] = ["benchmark", "entry", "change", "verdict"];

fn markdown(entries: &[Entry], sections: &[Section]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark trends\n");
    let _ = writeln!(
        s,
        "{} entries. Dots are medians, bars interquartile ranges; orange dots were recorded with planted faults; red dashed lines mark change points (the gate's verdict against the previous entry of the same machine).\n",
        entries.len()
    );
    let _ = writeln!(s, "| {} |", ENTRY_HEADER.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(ENTRY_HEADER.len()));
    for row in entry_rows(entries) {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    for sec in sections {
        let _ = writeln!(s, "\n## Machine: {}\n", sec.machine);
        if sec.changes.is_empty() {
            let _ = writeln!(s, "No change points.\n");
        } else {
            let _ = writeln!(s, "### Change points\n");
            let _ = writeln!(s, "| {} |", CHANGE_HEADER.join(" | "));
            let _ = writeln!(s, "|---|---|---:|---|");
            for (id, entry, change, verdict) in &sec.changes {
                let _ = writeln!(s, "| {id} | {entry} | {change} | {verdict} |");
            }
            let _ = writeln!(s);
        }
        for (id, file) in sec.charts.iter().chain(&sec.quality_charts) {
            let _ = writeln!(s, "![{id}]({file})");
        }
    }
    s
}

fn html(entries: &[Entry], sections: &[Section]) -> String {
    let table = |header: &[&str], rows: &[Vec<String>]| {
        let mut t = String::from("<table>\n<tr>");
        for h in header {
            let _ = write!(t, "<th>{}</th>", escape(h));
        }
        t.push_str("</tr>\n");
        for row in rows {
            t.push_str("<tr>");
            for c in row {
                let _ = write!(t, "<td>{}</td>", escape(c));
            }
            t.push_str("</tr>\n");
        }
        t.push_str("</table>\n");
        t
    };
    let mut s = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Benchmark trends</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{display:block;margin:1em 0}</style></head><body>\n<h1>Benchmark trends</h1>\n",
    );
    let _ = writeln!(
        s,
        "<p>{} entries. Dots are medians, bars interquartile ranges; orange dots were recorded with planted faults; red dashed lines mark change points.</p>",
        entries.len()
    );
    let rows: Vec<Vec<String>> = entry_rows(entries)
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    s.push_str(&table(&ENTRY_HEADER, &rows));
    for sec in sections {
        let _ = writeln!(s, "<h2>Machine: {}</h2>", escape(&sec.machine));
        if sec.changes.is_empty() {
            s.push_str("<p>No change points.</p>\n");
        } else {
            s.push_str("<h3>Change points</h3>\n");
            let rows: Vec<Vec<String>> = sec
                .changes
                .iter()
                .map(|(a, b, c, d)| vec![a.clone(), b.clone(), c.clone(), d.clone()])
                .collect();
            s.push_str(&table(&CHANGE_HEADER, &rows));
        }
        for (id, file) in sec.charts.iter().chain(&sec.quality_charts) {
            let _ = writeln!(s, "<img src=\"{}\" alt=\"{}\">", escape(file), escape(id));
        }
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(v: f64) -> Point {
        Point {
            label: format!("c{v}"),
            value: v,
            spread: Some((v * 0.9, v * 1.1)),
            faulted: false,
        }
    }

    #[test]
    fn charts_draw_every_point_and_mark_change_points() {
        let points: Vec<Point> = [100.0, 101.0, 150.0].into_iter().map(point).collect();
        let changes = [ChangePoint {
            index: 2,
            change: 0.49,
            verdict: Verdict::Slower,
        }];
        let svg = chart_svg(
            "cpu_step/10k",
            "machine",
            &points,
            &changes,
            Unit::Nanoseconds,
        );
        assert_eq!(svg.matches("class=\"point\"").count(), 3);
        assert_eq!(svg.matches("class=\"change-point\"").count(), 1);
        assert!(svg.contains("+49.0% slower"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // The slower point is drawn higher up (smaller y) than the others.
        let ys: Vec<f64> = svg
            .match_indices("class=\"point\" cx=\"")
            .map(|(at, _)| {
                let rest = &svg[at..];
                let cy = rest.split("cy=\"").nth(1).unwrap();
                cy.split('"').next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(ys[2] < ys[0] && ys[2] < ys[1], "{ys:?}");
        assert_eq!(
            svg,
            chart_svg(
                "cpu_step/10k",
                "machine",
                &points,
                &changes,
                Unit::Nanoseconds
            )
        );
    }

    #[test]
    fn degenerate_charts_still_render() {
        let svg = chart_svg("x", "m", &[point(5.0)], &[], Unit::Plain);
        assert_eq!(svg.matches("class=\"point\"").count(), 1);
        let svg = chart_svg("<x>", "m", &[], &[], Unit::Plain);
        assert!(svg.contains("&lt;x&gt;"));
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(
            file_stem("cpu_kernels/10k/force_pass"),
            "cpu_kernels_10k_force_pass"
        );
        assert_eq!(file_stem("a b/../c"), "a_b____c");
    }
}
