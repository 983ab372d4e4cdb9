//! Plots with plotters, each drawn twice by the same code: SVG (text as text) and PNG (text
//! rasterised with the embedded DejaVu Sans).
use std::fmt::Display;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::{self, FAMILY};
use super::paper::PaperFile;
use super::{file_stem, Run, ZERO_SHOT_COLUMNS};
use crate::score::DatasetScores;
use crate::{Error, Result};

type DrawResult = std::result::Result<(), String>;

fn d<E: Display>(e: E) -> String {
    e.to_string()
}

/// Colours of our runs (Tableau 10).
const OURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

/// The colour of our series `j` in every plot: the ten of `OURS`, then the same ten darker, then
/// lighter (lighter last: a faded bar marks an incomplete dataset), so no two of up to thirty
/// series share a colour.
fn series_color(j: usize) -> RGBColor {
    let RGBColor(r, g, b) = OURS[j % OURS.len()];
    let blend = |c: u8, to: f64, t: f64| (c as f64 + (to - c as f64) * t).round() as u8;
    match (j / OURS.len()) % 3 {
        0 => RGBColor(r, g, b),
        1 => RGBColor(blend(r, 0.0, 0.45), blend(g, 0.0, 0.45), blend(b, 0.0, 0.45)),
        _ => RGBColor(blend(r, 255.0, 0.5), blend(g, 255.0, 0.5), blend(b, 255.0, 0.5)),
    }
}

/// Colours of the paper's rows: greys, darkest first.
const PAPER: [RGBColor; 5] =
    [RGBColor(60, 60, 60), RGBColor(115, 115, 115), RGBColor(165, 165, 165), RGBColor(200, 200, 200), RGBColor(90, 90, 90)];

/// Draw into `dir/<stem>.svg` and `dir/<stem>.png` (both written atomically; the two closures
/// are the same drawing code instantiated for each backend).
fn render<F1, F2>(dir: &Path, stem: &str, size: (u32, u32), draw_svg: F1, draw_png: F2) -> Result<Vec<PathBuf>>
where
    F1: FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
    F2: FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
{
    font::ensure()?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let svg_path = dir.join(format!("{stem}.svg"));
    let png_path = dir.join(format!("{stem}.png"));
    let fail = |p: &Path, e: String| Error::Report(format!("plot {}: {e}", p.display()));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw_svg(&root).map_err(|e| fail(&svg_path, e))?;
        root.present().map_err(|e| fail(&svg_path, e.to_string()))?;
    }
    crate::util::write_atomic(&svg_path, svg.as_bytes())?;

    // the bitmap backend picks the encoder from the extension, so the temp name ends in .png
    let tmp = dir.join(format!("{stem}.tmp.png"));
    let drawn = {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        draw_png(&root).and_then(|()| root.present().map_err(d))
    };
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&png_path, e));
    }
    std::fs::rename(&tmp, &png_path).map_err(|e| Error::io(&png_path, e))?;
    Ok(vec![svg_path, png_path])
}

/// Width in pixels of `text` at `size` in the plot font.
fn text_width(text: &str, size: f64) -> u32 {
    (FAMILY, size).into_font().box_size(text).map(|(w, _)| w).unwrap_or((text.chars().count() as f64 * size * 0.6) as u32)
}

/// A linear f64 axis whose ticks are exactly `keys` (plotters' `with_key_points` on f64 has no
/// label formatter, which a custom `x_label_formatter` needs).
struct Keyed {
    lo: f64,
    hi: f64,
    keys: Vec<f64>,
}

fn keyed(range: std::ops::Range<f64>, keys: Vec<f64>) -> Keyed {
    Keyed { lo: range.start, hi: range.end, keys }
}

impl Ranged for Keyed {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = limit.1 - limit.0;
        if span == 0 || self.hi == self.lo {
            return limit.1;
        }
        limit.0 + (span as f64 * (value - self.lo) / (self.hi - self.lo) + 1e-3).floor() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

// ---------------------------------------------------------------- zero-shot grouped bars

struct Series {
    label: String,
    color: RGBColor,
    paper: bool,
    /// seven datasets + Avg
    values: [Option<f64>; 8],
    ci: [Option<(f64, f64)>; 8],
    partial: [bool; 8],
}

struct ZeroShotPlot {
    title: String,
    series: Vec<Series>,
    legend_w: u32,
    size: (u32, u32),
}

const LEGEND_FONT: f64 = 15.0;
const LEGEND_ROW: i32 = 24;
const NOTES: [&str; 4] = [
    "Whiskers: 95% bootstrap CI (our runs).",
    "Faded bar: dataset not complete yet.",
    "Avg: only for runs with all 7 complete.",
    "(paper): Huang et al. 2026, Table 1.",
];

impl ZeroShotPlot {
    /// One plot per sample size: `runs` all share `limit` (None = the full test sets).
    fn new(runs: &[&Run], paper: &PaperFile, limit: Option<usize>) -> ZeroShotPlot {
        let title = match limit {
            None => "Zero-shot NER F1 (%) on the seven out-of-domain test sets (full sets)".to_string(),
            Some(n) => format!("Zero-shot NER F1 (%), seeded samples of {n} test sentences per set"),
        };
        let mut series = Vec::new();
        let systems: Vec<String> = runs.iter().map(|r| r.system()).collect();
        for (j, run) in runs.iter().enumerate() {
            let mut label = systems[j].clone();
            // the same system twice in one plot (another seed, another model file): tell them
            // apart by the run id's hash
            let twins = systems.iter().filter(|s| **s == systems[j]).count();
            if twins > 1 {
                let id = run.id();
                label.push_str(&format!(" [{}]", id.rsplit('-').next().unwrap_or(&id)));
            }
            let mut s = Series {
                label,
                color: series_color(j),
                paper: false,
                values: [None; 8],
                ci: [None; 8],
                partial: [false; 8],
            };
            for (k, ds) in run.zero_shot().iter().enumerate() {
                if let Some(ds) = ds {
                    s.values[k] = Some(ds.f1);
                    s.ci[k] = Some((ds.ci95[0], ds.ci95[1]));
                    s.partial[k] = !ds.complete();
                }
            }
            s.values[7] = run.average();
            series.push(s);
        }
        for (j, row) in paper.table1.iter().filter(|r| r.plot).enumerate() {
            let mut values = [None; 8];
            values[..7].copy_from_slice(&row.f1s());
            values[7] = row.avg;
            series.push(Series {
                label: format!("{} (paper)", row.model),
                color: PAPER[j % PAPER.len()],
                paper: true,
                values,
                ci: [None; 8],
                partial: [false; 8],
            });
        }
        let widest = series.iter().map(|s| text_width(&s.label, LEGEND_FONT)).chain(NOTES.iter().map(|n| text_width(n, 14.0))).max().unwrap_or(0);
        let legend_w = (widest + 60).clamp(240, 620);
        let n = series.len().max(1) as u32;
        // at least ~12 px per bar, 8 groups, bars take 80% of a group
        let width = (legend_w + 110 + 120 * n).max(1200);
        let legend_h = 150 + LEGEND_ROW as u32 * (series.len() as u32 + NOTES.len() as u32);
        let height = legend_h.max(600);
        ZeroShotPlot { title, series, legend_w, size: (width, height) }
    }
}

fn group_name(x: f64) -> String {
    let k = x.floor() as usize;
    match k {
        0..=6 => ZERO_SHOT_COLUMNS[k].1.to_string(),
        7 => "Avg".to_string(),
        _ => String::new(),
    }
}

fn draw_zero_shot<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &ZeroShotPlot) -> DrawResult {
    root.fill(&WHITE).map_err(d)?;
    let root = root.margin(10, 8, 0, 0);
    let root = root.titled(&p.title, (FAMILY, 26)).map_err(d)?;
    let (w, _) = root.dim_in_pixel();
    let (chart_area, legend_area) = root.split_horizontally(w.saturating_sub(p.legend_w));
    let centers: Vec<f64> = (0..8).map(|k| k as f64 + 0.5).collect();
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_left(10)
        .margin_right(10)
        .margin_top(10)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d(keyed(0.0..8.0, centers), keyed(0.0..100.0, (0..=10).map(|v| v as f64 * 10.0).collect()))
        .map_err(d)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(BLACK.mix(0.12))
        .x_label_formatter(&|x| group_name(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_style((FAMILY, 17))
        .y_label_style((FAMILY, 15))
        .x_desc("Test set (Avg = mean of the seven rounded F1s)")
        .y_desc("F1 (%)")
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(d)?;

    // separator between the datasets and Avg
    chart.draw_series(std::iter::once(PathElement::new(vec![(7.0, 0.0), (7.0, 100.0)], BLACK.mix(0.35).stroke_width(1)))).map_err(d)?;

    let n = p.series.len().max(1) as f64;
    let bw = 0.84 / n;
    for (j, s) in p.series.iter().enumerate() {
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        for k in 0..8 {
            let Some(v) = s.values[k] else { continue };
            let x0 = k as f64 + 0.08 + j as f64 * bw;
            let x1 = x0 + bw * 0.88;
            let style = if s.partial[k] { s.color.mix(0.35).filled() } else { s.color.filled() };
            bars.push(Rectangle::new([(x0, 0.0), (x1, v)], style));
            if s.partial[k] {
                bars.push(Rectangle::new([(x0, 0.0), (x1, v)], s.color.stroke_width(1)));
            }
            if let Some((lo, hi)) = s.ci[k] {
                let xc = (x0 + x1) / 2.0;
                let cap = bw * 0.22;
                let st = BLACK.mix(0.85).stroke_width(2);
                whiskers.push(PathElement::new(vec![(xc, lo), (xc, hi)], st));
                whiskers.push(PathElement::new(vec![(xc - cap, lo), (xc + cap, lo)], st));
                whiskers.push(PathElement::new(vec![(xc - cap, hi), (xc + cap, hi)], st));
            }
        }
        chart.draw_series(bars).map_err(d)?;
        chart.draw_series(whiskers).map_err(d)?;
    }

    // legend panel
    let legend = legend_area.margin(40, 10, 10, 10);
    let title = TextStyle::from((FAMILY, 17).into_font()).color(&BLACK);
    legend.draw(&Text::new("Systems", (0, 0), title)).map_err(d)?;
    let text = TextStyle::from((FAMILY, LEGEND_FONT).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = 36;
    let mut drew_paper_gap = false;
    for s in &p.series {
        if s.paper && !drew_paper_gap {
            drew_paper_gap = true;
            if p.series.iter().any(|s| !s.paper) {
                y += 8;
            }
        }
        legend.draw(&Rectangle::new([(0, y - 8), (22, y + 8)], s.color.filled())).map_err(d)?;
        legend.draw(&Text::new(s.label.clone(), (32, y), text.clone())).map_err(d)?;
        y += LEGEND_ROW;
    }
    if p.series.iter().all(|s| s.paper) {
        // only the full-set plot is drawn without runs (a sample plot exists because runs used its size)
        legend.draw(&Text::new("(no full-set runs in results/ yet)", (0, y), text.clone())).map_err(d)?;
        y += LEGEND_ROW;
    }
    y += 16;
    let grey = BLACK.mix(0.75);
    let note = TextStyle::from((FAMILY, 14).into_font()).color(&grey).pos(Pos::new(HPos::Left, VPos::Center));
    for line in NOTES {
        legend.draw(&Text::new(line, (0, y), note.clone())).map_err(d)?;
        y += 22;
    }
    Ok(())
}

/// `plots_dir/zero-shot.{svg,png}` (runs on the full test sets, always written) and
/// `plots_dir/zero-shot-n<N>.{svg,png}` for each sample size N that runs used, each beside the
/// paper's plotted rows: bars of different sample sizes never share a plot.
pub fn zero_shot(runs: &[Run], paper: &PaperFile, plots_dir: &Path) -> Result<Vec<PathBuf>> {
    font::ensure()?;
    let mut limits: Vec<Option<usize>> = std::iter::once(None).chain(runs.iter().map(|r| r.scores.limit)).collect();
    limits.sort_unstable();
    limits.dedup();
    let mut written = Vec::new();
    for limit in limits {
        let group: Vec<&Run> = runs.iter().filter(|r| r.scores.limit == limit).collect();
        let p = ZeroShotPlot::new(&group, paper, limit);
        let stem = match limit {
            None => "zero-shot".to_string(),
            Some(n) => format!("zero-shot-n{n}"),
        };
        written.extend(render(plots_dir, &stem, p.size, |r| draw_zero_shot(r, &p), |r| draw_zero_shot(r, &p))?);
    }
    Ok(written)
}

// ---------------------------------------------------------------- per-label panels

struct Panel {
    title: String,
    color: RGBColor,
    /// (label, F1, gold mentions), most frequent gold label first
    labels: Vec<(String, f64, usize)>,
    /// labels predicted that never occur in the gold (F1 = 0), and their predictions
    hidden: (usize, usize),
}

struct LabelsPlot {
    title: String,
    run_id: String,
    panels: Vec<Panel>,
    cols: usize,
    row_heights: Vec<u32>,
    size: (u32, u32),
}

const PANEL_W: u32 = 400;
const LABEL_ROW: u32 = 22;
const TITLE_H: u32 = 70;

fn panel_title(header: &str, d: &DatasetScores) -> String {
    if d.complete() {
        format!("{header}: F1 {:.2} [{:.1}, {:.1}]", d.f1, d.ci95[0], d.ci95[1])
    } else {
        format!("{header}: F1 {:.1}* ({}/{})", d.f1, d.sentences, d.expected)
    }
}

impl LabelsPlot {
    fn new(run: &Run) -> LabelsPlot {
        // the seven in table order, then any other dataset by name
        let mut order: Vec<(String, String)> = ZERO_SHOT_COLUMNS
            .iter()
            .filter(|(n, _)| run.scores.datasets.contains_key(*n))
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect();
        for name in run.scores.datasets.keys() {
            if !ZERO_SHOT_COLUMNS.iter().any(|(n, _)| n == name) {
                order.push((name.clone(), name.clone()));
            }
        }
        let panels: Vec<Panel> = order
            .iter()
            .enumerate()
            .map(|(i, (name, header))| {
                let d = &run.scores.datasets[name];
                let mut labels: Vec<(String, f64, usize)> =
                    d.per_label.iter().filter(|(_, l)| l.gold > 0).map(|(n, l)| (n.clone(), l.f1, l.gold)).collect();
                labels.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
                let extra: Vec<_> = d.per_label.values().filter(|l| l.gold == 0).collect();
                Panel {
                    title: panel_title(header, d),
                    color: series_color(i),
                    labels,
                    hidden: (extra.len(), extra.iter().map(|l| l.predicted).sum()),
                }
            })
            .collect();
        let cols = panels.len().clamp(1, 4);
        let rows = panels.len().div_ceil(cols).max(1);
        let row_heights: Vec<u32> = (0..rows)
            .map(|r| {
                let most = panels.iter().skip(r * cols).take(cols).map(|p| p.labels.len()).max().unwrap_or(0) as u32;
                (120 + most * LABEL_ROW).max(260)
            })
            .collect();
        let width = (cols as u32 * PANEL_W).max(1200);
        let height = (TITLE_H + row_heights.iter().sum::<u32>()).max(600);
        let title = format!("Per-label F1 (%) of {}", run.system());
        LabelsPlot { title, run_id: run.id(), panels, cols, row_heights, size: (width, height) }
    }
}

fn draw_labels<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &LabelsPlot) -> DrawResult {
    root.fill(&WHITE).map_err(d)?;
    let (title_area, body) = root.split_vertically(TITLE_H);
    let (tw, _) = title_area.dim_in_pixel();
    let center = Pos::new(HPos::Center, VPos::Center);
    title_area
        .draw(&Text::new(p.title.clone(), (tw as i32 / 2, 24), TextStyle::from((FAMILY, 24).into_font()).pos(center)))
        .map_err(d)?;
    let sub = format!("results/{}: labels in the gold, most frequent first; (n) = gold mentions; * = dataset not complete (scored/expected).", p.run_id);
    title_area
        .draw(&Text::new(sub, (tw as i32 / 2, 54), TextStyle::from((FAMILY, 15).into_font()).color(&BLACK.mix(0.7)).pos(center)))
        .map_err(d)?;
    if p.panels.is_empty() {
        let (bw, bh) = body.dim_in_pixel();
        body.draw(&Text::new("This run has no per-dataset scores yet.", (bw as i32 / 2, bh as i32 / 3), TextStyle::from((FAMILY, 20).into_font()).pos(center)))
            .map_err(d)?;
        return Ok(());
    }
    let mut rest = body;
    for (r, h) in p.row_heights.iter().enumerate() {
        let (row, below) = rest.split_vertically(*h);
        rest = below;
        let cells = row.split_evenly((1, p.cols));
        for (c, cell) in cells.iter().enumerate() {
            if let Some(panel) = p.panels.get(r * p.cols + c) {
                draw_panel(cell, panel)?;
            }
        }
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> DrawResult {
    let n = p.labels.len();
    let label_w = p.labels.iter().map(|(l, _, g)| text_width(&format!("{l} ({g})"), 13.0)).max().unwrap_or(40) + 14;
    let (aw, _) = area.dim_in_pixel();
    let label_w = label_w.clamp(60, aw / 2);
    let fit = |l: &str, g: usize| {
        let full = format!("{l} ({g})");
        if text_width(&full, 13.0) + 14 <= label_w {
            return full;
        }
        let mut s: String = l.to_string();
        while !s.is_empty() && text_width(&format!("{s}… ({g})"), 13.0) + 14 > label_w {
            s.pop();
        }
        format!("{s}… ({g})")
    };
    let names: Vec<String> = p.labels.iter().map(|(l, _, g)| fit(l, *g)).collect();
    let rows = n.max(1) as f64;
    // label i (0 = most frequent) is drawn at the top
    let y_of = |i: usize| rows - i as f64 - 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(p.title.clone(), (FAMILY, 16))
        .margin(12)
        .margin_bottom(if p.hidden.0 > 0 { 24 } else { 12 })
        .x_label_area_size(44)
        .y_label_area_size(label_w)
        .build_cartesian_2d(
            keyed(0.0..100.0, vec![0.0, 25.0, 50.0, 75.0, 100.0]),
            keyed(0.0..rows, (0..n).map(y_of).collect()),
        )
        .map_err(d)?;
    let ylab = |y: &f64| {
        let i = (rows - 0.5 - *y).round();
        if i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    if p.hidden.0 > 0 {
        // below the x axis description, left-aligned in the cell
        let (_, ah) = area.dim_in_pixel();
        let s = if p.hidden.0 == 1 { "" } else { "s" };
        let note = format!("not shown: {} predicted label{s} absent from the gold ({} preds)", p.hidden.0, p.hidden.1);
        let grey = BLACK.mix(0.6);
        let style = TextStyle::from((FAMILY, 12).into_font()).color(&grey).pos(Pos::new(HPos::Left, VPos::Bottom));
        area.draw(&Text::new(note, (12, ah as i32 - 4), style)).map_err(d)?;
    }
    chart
        .configure_mesh()
        .disable_y_mesh()
        .bold_line_style(BLACK.mix(0.12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&ylab)
        .x_label_style((FAMILY, 13))
        .y_label_style((FAMILY, 13))
        .x_desc("F1 (%)")
        .axis_desc_style((FAMILY, 13))
        .draw()
        .map_err(d)?;
    if n == 0 {
        chart
            .draw_series(std::iter::once(Text::new(
                "no gold labels",
                (50.0, 0.5),
                TextStyle::from((FAMILY, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center)),
            )))
            .map_err(d)?;
        return Ok(());
    }
    chart
        .draw_series(p.labels.iter().enumerate().map(|(i, (_, f1, _))| {
            let y = y_of(i);
            Rectangle::new([(0.0, y - 0.36), (*f1, y + 0.36)], p.color.filled())
        }))
        .map_err(d)?;
    chart
        .draw_series(p.labels.iter().enumerate().map(|(i, (_, f1, _))| {
            let y = y_of(i);
            let text = format!("{f1:.1}");
            if *f1 >= 22.0 {
                Text::new(text, (*f1 - 1.0, y), TextStyle::from((FAMILY, 12).into_font()).color(&WHITE).pos(Pos::new(HPos::Right, VPos::Center)))
            } else {
                Text::new(text, (*f1 + 1.0, y), TextStyle::from((FAMILY, 12).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)))
            }
        }))
        .map_err(d)?;
    Ok(())
}

/// `plots_dir/labels-<run-id>.{svg,png}`.
pub fn labels(run: &Run, plots_dir: &Path) -> Result<Vec<PathBuf>> {
    font::ensure()?;
    let p = LabelsPlot::new(run);
    let stem = format!("labels-{}", file_stem(&run.id()));
    render(plots_dir, &stem, p.size, |r| draw_labels(r, &p), |r| draw_labels(r, &p))
}

/// A histogram of rationale lengths (words) of a CoT build: `plots_dir/<stem>.{svg,png}`.
pub fn histogram(values: &[usize], title: &str, x_label: &str, plots_dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    let max = values.iter().copied().max().unwrap_or(1).max(1);
    let bins = 30usize;
    let width = max.div_ceil(bins).max(1);
    let mut counts = vec![0usize; bins + 1];
    for v in values {
        counts[v / width] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    fn draw_hist<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, counts: &[usize], width: usize, top: usize, title: &str, x_label: &str) -> DrawResult {
        root.fill(&WHITE).map_err(d)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0usize..counts.len() * width, 0usize..top + top / 10 + 1)
            .map_err(d)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_label)
            .y_desc("rationales")
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 14))
            .draw()
            .map_err(d)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                Rectangle::new([(i * width, 0), ((i + 1) * width, c)], OURS[0].mix(0.8).filled())
            }))
            .map_err(d)?;
        Ok(())
    }
    render(
        plots_dir,
        stem,
        (800, 420),
        |r| draw_hist(r, &counts, width, top, title, x_label),
        |r| draw_hist(r, &counts, width, top, title, x_label),
    )
}

/// One line of a [`curves`] plot.
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Training curves (loss, reward, …) against the update step: `plots_dir/<stem>.{svg,png}`,
/// one panel per `(title, y label, curves)`.
pub fn curves(panels: &[(String, String, Vec<Curve>)], x_label: &str, plots_dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, panels: &[(String, String, Vec<Curve>)], x_label: &str) -> DrawResult {
        root.fill(&WHITE).map_err(d)?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        for ((title, y_label, curves), area) in panels.iter().zip(areas.iter()) {
            let pts = curves.iter().flat_map(|c| c.points.iter());
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y) in pts {
                if y.is_finite() {
                    x0 = x0.min(x);
                    x1 = x1.max(x);
                    y0 = y0.min(y);
                    y1 = y1.max(y);
                }
            }
            if x0 > x1 {
                (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
            }
            let pad = ((y1 - y0) * 0.08).max(1e-6);
            let (lo, mut hi) = (y0 - pad, y1 + pad);
            // the legend goes to the corner where it hides the least; where every corner hides
            // some of the curves, the top is raised to leave it a free band above them
            let labelled = curves.len() > 1 || curves.iter().any(|c| !c.name.is_empty());
            let longest = curves.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
            let (w, h) = area.dim_in_pixel();
            let plot_px = (w.saturating_sub(76), h.saturating_sub(82));
            let lines: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| c.points.iter().copied().filter(|p| p.1.is_finite()).collect()).collect();
            let legend = legend_px(curves.len(), longest);
            let (mut corner, hidden) = legend_corner(&lines, (x0, x1.max(x0 + 1.0)), (lo, hi), plot_px, legend);
            if labelled && hidden > 0 {
                let fh = ((legend.1 + 14.0) / plot_px.1.max(1) as f64).min(0.6);
                hi = lo + (hi - lo) / (1.0 - fh);
                corner = SeriesLabelPosition::UpperRight;
            }
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FAMILY, 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1.max(x0 + 1.0), lo..hi)
                .map_err(d)?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label.as_str())
                .label_style((FAMILY, 12))
                .axis_desc_style((FAMILY, 13))
                .draw()
                .map_err(d)?;
            for (i, c) in curves.iter().enumerate() {
                let color = series_color(i);
                chart
                    .draw_series(LineSeries::new(c.points.iter().copied().filter(|p| p.1.is_finite()), color.stroke_width(2)))
                    .map_err(d)?
                    .label(c.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            if labelled {
                chart
                    .configure_series_labels()
                    .position(corner)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font((FAMILY, 12))
                    .draw()
                    .map_err(d)?;
            }
        }
        Ok(())
    }
    let h = 300 * panels.len().max(1) as u32;
    render(plots_dir, stem, (900, h), |r| draw(r, panels, x_label), |r| draw(r, panels, x_label))
}

/// One line of a [`bands`] plot: the mean per x, a shaded band (lo, hi) and the single values.
pub struct Band {
    pub name: String,
    /// (x, mean, lo, hi)
    pub points: Vec<(f64, f64, f64, f64)>,
    /// (x, y) of each seed
    pub dots: Vec<(f64, f64)>,
    /// drawn grey and dashed, no band (numbers reported by the paper)
    pub paper: bool,
}

/// The corner of a plot for its legend: the one whose box (`legend_px` in a plot of `plot_px`
/// pixels, x and y ranges `xr`, `yr`) covers the fewest points of the `lines` (their vertices and
/// points sampled along each segment), with that count; upper left on a tie.
fn legend_corner(lines: &[Vec<(f64, f64)>], xr: (f64, f64), yr: (f64, f64), plot_px: (u32, u32), legend_px: (f64, f64)) -> (SeriesLabelPosition, usize) {
    // the box's share of the plot, with the gap plotters leaves at the edge
    let fw = ((legend_px.0 + 10.0) / plot_px.0.max(1) as f64).min(1.0);
    let fh = ((legend_px.1 + 10.0) / plot_px.1.max(1) as f64).min(1.0);
    let unit = |(x, y): (f64, f64)| ((x - xr.0) / (xr.1 - xr.0).max(1e-9), (y - yr.0) / (yr.1 - yr.0).max(1e-9));
    let mut samples: Vec<(f64, f64)> = Vec::new();
    for l in lines {
        samples.extend(l.iter().map(|&p| unit(p)));
        for w in l.windows(2) {
            let (a, b) = (unit(w[0]), unit(w[1]));
            samples.extend((1..20).map(|k| {
                let t = k as f64 / 20.0;
                (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
            }));
        }
    }
    let corners = [
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let covered = |right: bool, upper: bool| {
        samples
            .iter()
            .filter(|&&(u, v)| (if right { u >= 1.0 - fw } else { u <= fw }) && (if upper { v >= 1.0 - fh } else { v <= fh }))
            .count()
    };
    let mut best = (SeriesLabelPosition::UpperLeft, usize::MAX);
    for (pos, right, upper) in corners {
        let n = covered(right, upper);
        if n < best.1 {
            best = (pos, n);
        }
    }
    best
}

/// The legend's size in pixels for `n` entries, the longest `longest` characters (12 px labels).
fn legend_px(n: usize, longest: usize) -> (f64, f64) {
    (40.0 + 7.0 * longest as f64, 12.0 + 19.0 * n as f64)
}

/// One colour per band name over all panels (names sorted), so a starting model keeps its colour
/// from panel to panel whichever others a panel holds.
fn band_colors(panels: &[(String, Vec<String>, Vec<Band>)]) -> std::collections::HashMap<String, RGBColor> {
    let names: std::collections::BTreeSet<&String> = panels.iter().flat_map(|p| p.2.iter().filter(|b| !b.paper).map(|b| &b.name)).collect();
    names.into_iter().enumerate().map(|(j, n)| (n.clone(), series_color(j))).collect()
}

/// Curves with bands (one panel per `(title, bands)`), e.g. low-resource F1 against the training
/// share: `plots_dir/<stem>.{svg,png}`.
/// x values are positions 0, 1, … named by each panel's `ticks` (evenly spaced shares read better
/// than a linear axis when they span 0.1% to 100%).
pub fn bands(panels: &[(String, Vec<String>, Vec<Band>)], x_label: &str, y_label: &str, plots_dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, panels: &[(String, Vec<String>, Vec<Band>)], x_label: &str, y_label: &str) -> DrawResult {
        root.fill(&WHITE).map_err(d)?;
        let colors = band_colors(panels);
        let cols = panels.len().clamp(1, 2);
        let rows = panels.len().div_ceil(cols).max(1);
        let areas = root.split_evenly((rows, cols));
        for ((title, ticks, bands), area) in panels.iter().zip(areas.iter()) {
            let x1 = ticks.len().max(1) as f64 - 0.5;
            let y1 = bands.iter().flat_map(|b| b.points.iter().map(|p| p.3).chain(b.dots.iter().map(|p| p.1))).fold(0.0f64, f64::max);
            let y1 = (y1 * 1.15).clamp(5.0, 100.0);
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FAMILY, 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(keyed(-0.3..x1, (0..ticks.len()).map(|i| i as f64).collect()), 0.0..y1)
                .map_err(d)?;
            chart
                .configure_mesh()
                .x_label_formatter(&|x| ticks.get(x.round() as usize).cloned().unwrap_or_default())
                .x_desc(x_label)
                .y_desc(y_label)
                .label_style((FAMILY, 12))
                .axis_desc_style((FAMILY, 13))
                .draw()
                .map_err(d)?;
            for b in bands {
                let color = if b.paper { PAPER[0] } else { colors[&b.name] };
                if !b.paper && b.points.len() > 1 {
                    let mut poly: Vec<(f64, f64)> = b.points.iter().map(|p| (p.0, p.3)).collect();
                    poly.extend(b.points.iter().rev().map(|p| (p.0, p.2)));
                    chart.draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18).filled()))).map_err(d)?;
                }
                let line: Vec<(f64, f64)> = b.points.iter().map(|p| (p.0, p.1)).collect();
                let style = if b.paper { color.stroke_width(2) } else { color.stroke_width(3) };
                if b.paper {
                    chart.draw_series(DashedLineSeries::new(line.clone(), 6, 4, style)).map_err(d)?;
                } else {
                    chart.draw_series(LineSeries::new(line.clone(), style)).map_err(d)?;
                }
                chart
                    .draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), 4, color.filled())))
                    .map_err(d)?
                    .label(b.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
                chart.draw_series(b.dots.iter().map(|&(x, y)| Cross::new((x, y), 4, color.mix(0.7).stroke_width(1)))).map_err(d)?;
            }
            // the legend goes to the corner where it hides the least of the curves
            let mut drawn: Vec<Vec<(f64, f64)>> = Vec::new();
            for b in bands {
                drawn.push(b.points.iter().map(|p| (p.0, p.1)).collect());
                if !b.paper {
                    drawn.push(b.points.iter().map(|p| (p.0, p.2)).collect());
                    drawn.push(b.points.iter().map(|p| (p.0, p.3)).collect());
                }
                drawn.extend(b.dots.iter().map(|&p| vec![p]));
            }
            let longest = bands.iter().map(|b| b.name.chars().count()).max().unwrap_or(0);
            let plot_px = chart.plotting_area().dim_in_pixel();
            let (corner, _) = legend_corner(&drawn, (-0.3, x1), (0.0, y1), plot_px, legend_px(bands.len(), longest));
            chart
                .configure_series_labels()
                .position(corner)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FAMILY, 12))
                .draw()
                .map_err(d)?;
        }
        Ok(())
    }
    let cols = panels.len().clamp(1, 2) as u32;
    let rows = panels.len().div_ceil(2).max(1) as u32;
    render(plots_dir, stem, (560 * cols, 380 * rows), |r| draw(r, panels, x_label, y_label), |r| draw(r, panels, x_label, y_label))
}

/// One dataset of an [`errors`] figure.
pub struct ErrorBars {
    pub dataset: String,
    /// count per error kind, in `ErrorKind::ALL` order
    pub kinds: Vec<(String, usize)>,
    /// % of predicted entities found in the sentence / in the rationale (None: no prediction)
    pub grounded: Option<(f64, f64)>,
}

/// The error-analysis figure of one run: outcome of every predicted and gold entity by kind
/// (stacked shares per dataset) and how many predictions are grounded in the sentence and in the
/// rationale: `plots_dir/<stem>.{svg,png}`.
pub fn errors(title: &str, bars: &[ErrorBars], plots_dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, bars: &[ErrorBars]) -> DrawResult {
        root.fill(&WHITE).map_err(d)?;
        let root = root.titled(title, (FAMILY, 18)).map_err(d)?;
        let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 * 58 / 100);
        let n = bars.len().max(1) as f64;
        let names: Vec<String> = bars.iter().map(|b| b.dataset.clone()).collect();
        let centers: Vec<f64> = (0..bars.len()).map(|i| i as f64 + 0.5).collect();
        let label = |x: &f64| names.get(x.floor() as usize).cloned().unwrap_or_default();
        // stacked shares of outcomes
        let mut chart = ChartBuilder::on(&top)
            .caption("outcome of each predicted and gold entity (share, %)", (FAMILY, 15))
            .margin(10)
            .margin_right(170)
            .x_label_area_size(30)
            .y_label_area_size(46)
            .build_cartesian_2d(keyed(0.0..n, centers.clone()), 0.0..100.0)
            .map_err(d)?;
        chart.configure_mesh().disable_x_mesh().x_label_formatter(&label).label_style((FAMILY, 12)).y_desc("%").axis_desc_style((FAMILY, 13)).draw().map_err(d)?;
        let kinds: Vec<String> = bars.first().map(|b| b.kinds.iter().map(|k| k.0.clone()).collect()).unwrap_or_default();
        let colors = [OURS[2], OURS[1], OURS[4], OURS[5], OURS[3], OURS[9]];
        for (k, kind) in kinds.iter().enumerate() {
            let color = colors[k % colors.len()];
            let rects: Vec<_> = bars
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let total: usize = b.kinds.iter().map(|x| x.1).sum();
                    if total == 0 {
                        return None;
                    }
                    let below: usize = b.kinds[..k].iter().map(|x| x.1).sum();
                    let y0 = 100.0 * below as f64 / total as f64;
                    let y1 = 100.0 * (below + b.kinds[k].1) as f64 / total as f64;
                    Some(Rectangle::new([(i as f64 + 0.15, y0), (i as f64 + 0.85, y1)], color.filled()))
                })
                .collect();
            chart.draw_series(rects).map_err(d)?;
            legend_entry(&top, k, kind, color)?;
        }
        // grounded shares
        let mut chart = ChartBuilder::on(&bottom)
            .caption("predicted entities grounded in the sentence / in the rationale (%)", (FAMILY, 15))
            .margin(10)
            .margin_right(170)
            .x_label_area_size(30)
            .y_label_area_size(46)
            .build_cartesian_2d(keyed(0.0..n, centers), 0.0..100.0)
            .map_err(d)?;
        chart.configure_mesh().disable_x_mesh().x_label_formatter(&label).label_style((FAMILY, 12)).y_desc("%").axis_desc_style((FAMILY, 13)).draw().map_err(d)?;
        for (j, (name, color)) in [("in the sentence", OURS[0]), ("in the rationale", OURS[6])].into_iter().enumerate() {
            let rects: Vec<_> = bars
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let (s, r) = b.grounded?;
                    let v = if j == 0 { s } else { r };
                    let x0 = i as f64 + 0.15 + j as f64 * 0.35;
                    Some(Rectangle::new([(x0, 0.0), (x0 + 0.33, v)], color.filled()))
                })
                .collect();
            chart.draw_series(rects).map_err(d)?;
            legend_entry(&bottom, j, name, color)?;
        }
        Ok(())
    }
    /// A legend row in the right margin of `area`.
    fn legend_entry<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, row: usize, name: &str, color: RGBColor) -> DrawResult {
        let (w, _) = area.dim_in_pixel();
        let x = w as i32 - 160;
        let y = 44 + 22 * row as i32;
        area.draw(&Rectangle::new([(x, y - 7), (x + 14, y + 7)], color.filled())).map_err(d)?;
        let text = TextStyle::from((FAMILY, 13).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(name.to_string(), (x + 20, y), text)).map_err(d)?;
        Ok(())
    }
    let w = (240 + 130 * bars.len() as u32).max(760);
    render(plots_dir, stem, (w, 640), |r| draw(r, title, bars), |r| draw(r, title, bars))
}

/// One series of a [`grouped`] bar chart: a value (and CI) per group, `None` where absent.
pub struct BarSeries {
    pub name: String,
    pub values: Vec<Option<(f64, Option<(f64, f64)>)>>,
    /// grey, drawn after ours (numbers reported by the paper)
    pub paper: bool,
}

/// Grouped bars: the chart's margin and y-label area (pixels), the share of a group its bars
/// take, and the share of a bar's slot the bar fills.
const MARGIN: u32 = 10;
const Y_LABELS: u32 = 56;
const GROUP_SHARE: f64 = 0.84;
const BAR_SHARE: f64 = 0.88;

/// Grouped bars with CI whiskers (stage and reward ablations): `plots_dir/<stem>.{svg,png}`.
pub fn grouped(title: &str, groups: &[String], series: &[BarSeries], y_label: &str, plots_dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, groups: &[String], series: &[BarSeries], y_label: &str, legend_w: u32) -> DrawResult {
        root.fill(&WHITE).map_err(d)?;
        let root = root.titled(title, (FAMILY, 20)).map_err(d)?;
        let (w, _) = root.dim_in_pixel();
        let (chart_area, legend_area) = root.split_horizontally(w.saturating_sub(legend_w));
        let top = series.iter().flat_map(|s| s.values.iter().flatten().map(|(v, ci)| ci.map(|c| c.1).unwrap_or(*v).max(*v))).fold(0.0f64, f64::max);
        let top = (top * 1.15).clamp(5.0, 100.0);
        let n = groups.len().max(1);
        // each bar's value above it (or above its whisker), where bars are wide enough for it
        // (the chart's width less its margins and y-label area)
        let bar_px = (w.saturating_sub(legend_w + 2 * MARGIN + Y_LABELS)) as f64 / n as f64 * GROUP_SHARE / series.len().max(1) as f64 * BAR_SHARE;
        let value_labels = bar_px >= 30.0;
        let centers: Vec<f64> = (0..n).map(|k| k as f64 + 0.5).collect();
        let mut chart = ChartBuilder::on(&chart_area)
            .margin(MARGIN)
            .x_label_area_size(40)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(keyed(0.0..n as f64, centers), 0.0..top)
            .map_err(d)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| groups.get(x.floor() as usize).cloned().unwrap_or_default())
            .label_style((FAMILY, 13))
            .y_desc(y_label)
            .axis_desc_style((FAMILY, 14))
            .draw()
            .map_err(d)?;
        let m = series.len().max(1) as f64;
        let bw = GROUP_SHARE / m;
        let (mut ours, mut papers) = (0, 0);
        let colors: Vec<RGBColor> = series
            .iter()
            .map(|s| {
                if s.paper {
                    papers += 1;
                    PAPER[(papers - 1) % PAPER.len()]
                } else {
                    ours += 1;
                    series_color(ours - 1)
                }
            })
            .collect();
        for (j, s) in series.iter().enumerate() {
            let color = colors[j];
            let mut bars = Vec::new();
            let mut whiskers = Vec::new();
            for (k, v) in s.values.iter().enumerate() {
                let Some((v, ci)) = v else { continue };
                let x0 = k as f64 + 0.08 + j as f64 * bw;
                let x1 = x0 + bw * BAR_SHARE;
                bars.push(Rectangle::new([(x0, 0.0), (x1, *v)], color.filled()));
                if let Some((lo, hi)) = ci {
                    let xc = (x0 + x1) / 2.0;
                    let st = BLACK.mix(0.85).stroke_width(1);
                    whiskers.push(PathElement::new(vec![(xc, *lo), (xc, *hi)], st));
                    whiskers.push(PathElement::new(vec![(xc - bw * 0.2, *lo), (xc + bw * 0.2, *lo)], st));
                    whiskers.push(PathElement::new(vec![(xc - bw * 0.2, *hi), (xc + bw * 0.2, *hi)], st));
                }
            }
            chart.draw_series(bars).map_err(d)?;
            chart.draw_series(whiskers).map_err(d)?;
            if value_labels {
                let style = TextStyle::from((FAMILY, 11).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
                let labels = s.values.iter().enumerate().filter_map(|(k, v)| {
                    let (v, ci) = v.as_ref()?;
                    let x = k as f64 + 0.08 + j as f64 * bw + bw * BAR_SHARE / 2.0;
                    let y = (ci.map_or(*v, |c| c.1.max(*v)) + top * 0.01).min(top * 0.97);
                    Some(Text::new(format!("{v:.2}"), (x, y), style.clone()))
                });
                chart.draw_series(labels).map_err(d)?;
            }
        }
        let legend = legend_area.margin(30, 10, 10, 10);
        let text = TextStyle::from((FAMILY, 13).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        for (j, s) in series.iter().enumerate() {
            let y = 10 + 22 * j as i32;
            legend.draw(&Rectangle::new([(0, y - 7), (16, y + 7)], colors[j].filled())).map_err(d)?;
            legend.draw(&Text::new(s.name.clone(), (24, y), text.clone())).map_err(d)?;
        }
        if series.iter().any(|s| s.values.iter().flatten().any(|(_, ci)| ci.is_some())) {
            let y = 10 + 22 * series.len() as i32 + 12;
            let grey = BLACK.mix(0.7);
            legend.draw(&Text::new("Whiskers: 95% bootstrap CI", (0, y), TextStyle::from((FAMILY, 12).into_font()).color(&grey).pos(Pos::new(HPos::Left, VPos::Center)))).map_err(d)?;
        }
        Ok(())
    }
    let widest = series.iter().map(|s| text_width(&s.name, 13.0)).max().unwrap_or(100);
    let legend_w = (widest + 50).clamp(200, 560);
    let width = (legend_w + 80 + groups.len() as u32 * (10 * series.len() as u32 + 40)).clamp(1000, 1800);
    let height = (120 + 22 * series.len() as u32).max(480);
    render(plots_dir, stem, (width, height), |r| draw(r, title, groups, series, y_label, legend_w), |r| draw(r, title, groups, series, y_label, legend_w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_it_hides_the_least() {
        let at = |lines: &[Vec<(f64, f64)>]| format!("{:?}", legend_corner(lines, (0.0, 4.0), (0.0, 100.0), (400, 300), (120.0, 50.0)).0);
        // nothing drawn: upper left
        assert_eq!(at(&[]), "UpperLeft");
        // a high flat line across the top, one through the middle: the lower corners are free (right first)
        assert_eq!(at(&[vec![(0.0, 95.0), (4.0, 95.0)], vec![(0.0, 40.0), (4.0, 40.0)]]), "LowerRight");
        // a rising line from the lower left to the upper right: upper left
        assert_eq!(at(&[vec![(0.0, 0.0), (4.0, 100.0)]]), "UpperLeft");
        // a falling line from the upper left: upper right
        assert_eq!(at(&[vec![(0.0, 100.0), (4.0, 0.0)]]), "UpperRight");
        // a point in the upper left and one in the upper right (a paper point): the lower corners
        assert_eq!(at(&[vec![(0.1, 90.0)], vec![(3.9, 90.0)], vec![(0.0, 50.0), (4.0, 50.0)]]), "LowerRight");
    }

    #[test]
    fn thirty_series_get_thirty_colours() {
        let colours: std::collections::HashSet<(u8, u8, u8)> = (0..30).map(|j| series_color(j)).map(|RGBColor(r, g, b)| (r, g, b)).collect();
        assert_eq!(colours.len(), 30);
        assert!(OURS.iter().enumerate().all(|(j, c)| series_color(j) == *c), "the first ten are the palette itself");
    }

    /// A band keeps its colour across panels, whichever other bands a panel holds.
    #[test]
    fn a_band_name_has_one_colour_in_every_panel() {
        let band = |name: &str, paper: bool| Band { name: name.into(), points: vec![(0.0, 1.0, 1.0, 1.0)], dots: Vec::new(), paper };
        let panels = vec![
            ("a".to_string(), vec!["10%".to_string()], vec![band("smollm2", false), band("paper", true)]),
            ("b".to_string(), vec!["10%".to_string()], vec![band("cpu-grpo-paper", false), band("smollm2", false)]),
        ];
        let c = band_colors(&panels);
        assert_eq!(c.len(), 2, "paper bands take no series colour");
        assert_eq!(c["cpu-grpo-paper"], series_color(0));
        assert_eq!(c["smollm2"], series_color(1));
    }
}
