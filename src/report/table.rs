//! The zero-shot table as a polars DataFrame, written as CSV (polars' `CsvWriter`) and as markdown
//! (our own renderer over the frame's columns, so both files always show the same numbers).
use polars::prelude::*;

use super::paper::PaperFile;
use super::{Run, OURS_SOURCE, PAPER_SOURCE, ZERO_SHOT_COLUMNS};
use crate::{Error, Result};

fn perr(e: PolarsError) -> Error {
    Error::Report(format!("table: {e}"))
}

/// Column names of the CSV, in order.
pub fn zero_shot_columns() -> Vec<String> {
    let mut cols: Vec<String> = ["source", "system", "run_id"].iter().map(|s| s.to_string()).collect();
    for (_, h) in ZERO_SHOT_COLUMNS {
        cols.push(h.to_string());
        for suffix in ["lo", "hi", "n", "expected"] {
            cols.push(format!("{h}_{suffix}"));
        }
    }
    for c in ["Avg", "complete", "parse_failures", "truncated", "limit", "group", "num", "note", "engine", "prompt_tokens", "gen_tokens", "seconds", "cost_usd", "command", "results"] {
        cols.push(c.to_string());
    }
    cols
}

/// One table row before it becomes columns.
#[derive(Default)]
struct Row {
    source: String,
    system: String,
    run_id: Option<String>,
    f1: [Option<f64>; 7],
    lo: [Option<f64>; 7],
    hi: [Option<f64>; 7],
    n: [Option<u64>; 7],
    expected: [Option<u64>; 7],
    avg: Option<f64>,
    complete: Option<bool>,
    parse_failures: Option<u64>,
    truncated: Option<u64>,
    limit: Option<String>,
    group: Option<String>,
    num: Option<u64>,
    note: Option<String>,
    engine: Option<String>,
    prompt_tokens: Option<u64>,
    gen_tokens: Option<u64>,
    seconds: Option<f64>,
    cost_usd: Option<f64>,
    command: Option<String>,
    results: Option<String>,
}

fn run_row(run: &Run) -> Row {
    let mut row = Row {
        source: OURS_SOURCE.into(),
        system: run.system(),
        run_id: Some(run.id()),
        avg: run.average(),
        complete: Some(run.complete()),
        limit: Some(run.limit_text()),
        command: Some(run.scores.command.clone()),
        results: Some(run.path.display().to_string()),
        engine: Some(if run.scores.engine.is_empty() { "llama.cpp".into() } else { run.scores.engine.clone() }),
        prompt_tokens: Some(run.scores.usage.prompt_tokens as u64),
        gen_tokens: Some(run.scores.usage.gen_tokens as u64),
        seconds: Some(run.scores.usage.seconds),
        cost_usd: run.scores.usage.cost_usd,
        ..Row::default()
    };
    let (mut failures, mut truncated) = (0u64, 0u64);
    for (i, d) in run.zero_shot().iter().enumerate() {
        if let Some(d) = d {
            row.f1[i] = Some(d.f1);
            row.lo[i] = Some(d.ci95[0]);
            row.hi[i] = Some(d.ci95[1]);
            row.n[i] = Some(d.sentences as u64);
            row.expected[i] = Some(d.expected as u64);
            failures += d.parse_failures as u64;
            truncated += d.truncated as u64;
        }
    }
    row.parse_failures = Some(failures);
    row.truncated = Some(truncated);
    row
}

fn paper_rows(paper: &PaperFile) -> Vec<Row> {
    paper
        .table1
        .iter()
        .map(|p| Row {
            source: PAPER_SOURCE.into(),
            system: p.model.clone(),
            f1: p.f1s(),
            avg: p.avg,
            group: (!p.group.is_empty()).then(|| p.group.clone()),
            num: p.num,
            note: p.note.as_ref().map(|n| format!("{n} {}", paper.notes.get(n).map(String::as_str).unwrap_or(""))),
            ..Row::default()
        })
        .collect()
}

/// Our runs (in the given order) followed by the paper's Table 1 rows.
pub fn zero_shot_frame(runs: &[Run], paper: &PaperFile) -> Result<DataFrame> {
    let rows: Vec<Row> = runs.iter().map(run_row).chain(paper_rows(paper)).collect();
    let s = |name: &str, v: Vec<Option<String>>| Column::new(name.into(), v);
    let mut cols: Vec<Column> = vec![
        Column::new("source".into(), rows.iter().map(|r| r.source.clone()).collect::<Vec<_>>()),
        Column::new("system".into(), rows.iter().map(|r| r.system.clone()).collect::<Vec<_>>()),
        s("run_id", rows.iter().map(|r| r.run_id.clone()).collect()),
    ];
    for (i, (_, h)) in ZERO_SHOT_COLUMNS.iter().enumerate() {
        cols.push(Column::new((*h).into(), rows.iter().map(|r| r.f1[i]).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{h}_lo").into(), rows.iter().map(|r| r.lo[i]).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{h}_hi").into(), rows.iter().map(|r| r.hi[i]).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{h}_n").into(), rows.iter().map(|r| r.n[i]).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{h}_expected").into(), rows.iter().map(|r| r.expected[i]).collect::<Vec<_>>()));
    }
    cols.push(Column::new("Avg".into(), rows.iter().map(|r| r.avg).collect::<Vec<_>>()));
    cols.push(Column::new("complete".into(), rows.iter().map(|r| r.complete).collect::<Vec<_>>()));
    cols.push(Column::new("parse_failures".into(), rows.iter().map(|r| r.parse_failures).collect::<Vec<_>>()));
    cols.push(Column::new("truncated".into(), rows.iter().map(|r| r.truncated).collect::<Vec<_>>()));
    cols.push(s("limit", rows.iter().map(|r| r.limit.clone()).collect()));
    cols.push(s("group", rows.iter().map(|r| r.group.clone()).collect()));
    cols.push(Column::new("num".into(), rows.iter().map(|r| r.num).collect::<Vec<_>>()));
    cols.push(s("note", rows.iter().map(|r| r.note.clone()).collect()));
    cols.push(s("engine", rows.iter().map(|r| r.engine.clone()).collect()));
    cols.push(Column::new("prompt_tokens".into(), rows.iter().map(|r| r.prompt_tokens).collect::<Vec<_>>()));
    cols.push(Column::new("gen_tokens".into(), rows.iter().map(|r| r.gen_tokens).collect::<Vec<_>>()));
    cols.push(Column::new("seconds".into(), rows.iter().map(|r| r.seconds).collect::<Vec<_>>()));
    cols.push(Column::new("cost_usd".into(), rows.iter().map(|r| r.cost_usd).collect::<Vec<_>>()));
    cols.push(s("command", rows.iter().map(|r| r.command.clone()).collect()));
    cols.push(s("results", rows.iter().map(|r| r.results.clone()).collect()));
    let df = DataFrame::new(cols).map_err(perr)?;
    debug_assert_eq!(
        df.get_column_names().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        zero_shot_columns()
    );
    Ok(df)
}

/// The frame as CSV bytes (header included, empty cells for missing values).
pub fn to_csv(df: &mut DataFrame) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).include_header(true).finish(df).map_err(perr)?;
    Ok(buf)
}

// ---------------------------------------------------------------- reading cells back

fn col<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    df.column(name).map_err(perr)
}
fn f64_at(df: &DataFrame, name: &str, i: usize) -> Result<Option<f64>> {
    Ok(col(df, name)?.f64().map_err(perr)?.get(i))
}
fn u64_at(df: &DataFrame, name: &str, i: usize) -> Result<Option<u64>> {
    Ok(col(df, name)?.u64().map_err(perr)?.get(i))
}
fn str_at(df: &DataFrame, name: &str, i: usize) -> Result<Option<String>> {
    Ok(col(df, name)?.str().map_err(perr)?.get(i).map(str::to_string))
}

/// `45884` → `45,884`, as the paper prints #Num.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A markdown code span that survives backticks in `s`.
pub fn code_span(s: &str) -> String {
    let mut longest = 0;
    let mut cur = 0;
    for c in s.chars() {
        if c == '`' {
            cur += 1;
            longest = longest.max(cur);
        } else {
            cur = 0;
        }
    }
    let fence = "`".repeat(longest + 1);
    let pad = if longest > 0 { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A GitHub-flavoured markdown table: `|` escaped in cells, newlines flattened, columns padded.
pub fn render_markdown(headers: &[String], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
    let headers: Vec<String> = headers.iter().map(|h| clean(h)).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let width = |j: usize| {
        rows.iter().map(|r| r.get(j).map_or(0, |c| c.chars().count())).chain([headers[j].chars().count(), 3]).max().unwrap_or(3)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (j, w) in widths.iter().enumerate() {
            let c = cells.get(j).map(String::as_str).unwrap_or("");
            s.push_str(&format!(" {c}{} |", " ".repeat(w - c.chars().count())));
        }
        s.push('\n');
        s
    };
    let mut out = line(&headers);
    out.push('|');
    for w in &widths {
        out.push_str(&format!(" {} |", "-".repeat(*w)));
    }
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// The markdown cells of row `i` of the zero-shot frame.
fn markdown_row(df: &DataFrame, i: usize) -> Result<Vec<String>> {
    let source = str_at(df, "source", i)?.unwrap_or_default();
    let paper = source == PAPER_SOURCE;
    let mut cells = vec![source, str_at(df, "system", i)?.unwrap_or_default()];
    for (_, h) in ZERO_SHOT_COLUMNS {
        let f1 = f64_at(df, h, i)?;
        let cell = match f1 {
            None => "-".to_string(),
            Some(f) if paper => format!("{f:.1}"),
            Some(f) => {
                let n = u64_at(df, &format!("{h}_n"), i)?.unwrap_or(0);
                let expected = u64_at(df, &format!("{h}_expected"), i)?.unwrap_or(0);
                if n < expected {
                    format!("{f:.1}* ({n}/{expected})")
                } else {
                    let lo = f64_at(df, &format!("{h}_lo"), i)?.unwrap_or(f);
                    let hi = f64_at(df, &format!("{h}_hi"), i)?.unwrap_or(f);
                    format!("{f:.2} [{lo:.1}, {hi:.1}]")
                }
            }
        };
        cells.push(cell);
    }
    cells.push(match f64_at(df, "Avg", i)? {
        Some(a) if paper => format!("{a:.1}"),
        Some(a) => format!("{a:.2}"),
        None if paper => "-".into(),
        None => String::new(),
    });
    cells.push(u64_at(df, "parse_failures", i)?.map(|v| v.to_string()).unwrap_or_default());
    cells.push(str_at(df, "limit", i)?.unwrap_or_default());
    cells.push(match u64_at(df, "num", i)? {
        Some(n) => thousands(n),
        None if paper => "-".into(),
        None => String::new(),
    });
    cells.push(str_at(df, "results", i)?.map(|p| code_span(&p)).unwrap_or_default());
    Ok(cells)
}

/// `reports/zero-shot.md`: a header explaining the columns, the table, the runs' commands and
/// the paper's notes — all read from the frame.
pub fn zero_shot_markdown(df: &DataFrame, paper: &PaperFile) -> Result<String> {
    let mut headers: Vec<String> = vec!["Source".into(), "System".into()];
    headers.extend(ZERO_SHOT_COLUMNS.iter().map(|(_, h)| h.to_string()));
    for h in ["Avg", "Parse fail.", "Limit", "#Num", "Results"] {
        headers.push(h.into());
    }
    let mut rows = Vec::with_capacity(df.height());
    let mut ours = Vec::new();
    for i in 0..df.height() {
        if str_at(df, "source", i)?.as_deref() == Some(OURS_SOURCE) {
            ours.push(i);
        }
        rows.push(markdown_row(df, i)?);
    }

    let mut md = String::new();
    md.push_str("# Zero-shot NER F1 (%): our runs beside the paper's Table 1\n\n");
    md.push_str("Generated by `rner report` from `results/*/scores.json` and `baselines/paper-table1.toml` \
                 (the same table is in `zero-shot.csv`); regenerate it rather than editing it.\n\n");
    md.push_str(
        "- **Movie … Science**: micro F1 (%) on the test sets of MIT-Movie, MIT-Restaurant and CrossNER \
         AI/Literature/Music/Politics/Science, scored as the paper scores them (normalised exact (text, label) match).\n\
         - **`41.23 [38.1, 44.0]`**: F1 of one of our runs with its 95% bootstrap confidence interval over sentences.\n\
         - **`41.2* (123/431)`**: the dataset is incomplete — only 123 of the 431 sentences the run covers are scored so far.\n\
         - **Avg**: mean of the seven F1s rounded to 2 decimals (the paper's way); left blank unless all seven datasets are complete.\n\
         - **Parse fail.**: outputs with no parsable JSON answer, summed over the seven datasets (they count as predicting nothing).\n\
         - **Limit**: `full` = the whole test set; `N per dataset` = a seeded random sample of N test sentences of each dataset (`--limit N --seed S`).\n\
         - **Source** `paper-reported`: numbers copied from the paper (one decimal, as printed), not runs of ours; \
           `-` = not reported. **#Num** = IE training samples, as the paper gives it.\n\n",
    );
    if ours.is_empty() {
        md.push_str("No runs with a `scores.json` were found under `results/` yet; only the paper's rows are shown.\n\n");
    } else {
        let mut partial = Vec::new();
        for &i in &ours {
            if col(df, "complete")?.bool().map_err(perr)?.get(i) == Some(false) {
                let mut missing = Vec::new();
                for (_, h) in ZERO_SHOT_COLUMNS {
                    match (u64_at(df, &format!("{h}_n"), i)?, u64_at(df, &format!("{h}_expected"), i)?) {
                        (None, _) => missing.push(format!("{h} not run")),
                        (Some(n), Some(e)) if n < e => missing.push(format!("{h} {n}/{e}")),
                        _ => {}
                    }
                }
                let id = str_at(df, "run_id", i)?.unwrap_or_default();
                let system = str_at(df, "system", i)?.unwrap_or_default();
                partial.push(format!("- {} — {system}: {}\n", code_span(&id), missing.join(", ")));
            }
        }
        if partial.is_empty() {
            md.push_str(&format!("All {} runs cover all seven datasets completely.\n\n", ours.len()));
        } else {
            md.push_str(&format!("**Partial runs** ({} of {}; no Avg):\n\n", partial.len(), ours.len()));
            partial.iter().for_each(|p| md.push_str(p));
            md.push('\n');
        }
    }
    md.push_str(&render_markdown(&headers, &rows));
    md.push('\n');

    if !ours.is_empty() {
        md.push_str("## Runs\n\nThe command that produced each run (rerunning it resumes or repeats the run):\n\n");
        let mut usage_rows = Vec::new();
        for &i in &ours {
            let id = str_at(df, "run_id", i)?.unwrap_or_default();
            let system = str_at(df, "system", i)?.unwrap_or_default();
            let limit = str_at(df, "limit", i)?.unwrap_or_default();
            let truncated = u64_at(df, "truncated", i)?.unwrap_or(0);
            let command = str_at(df, "command", i)?.unwrap_or_default();
            md.push_str(&format!(
                "- {} — {system}, limit {limit}, {truncated} generations hit the token cap: {}\n",
                code_span(&id),
                code_span(&command)
            ));
            let cost = f64_at(df, "cost_usd", i)?.map_or("-".to_string(), |c| format!("{c:.4}"));
            usage_rows.push(vec![
                code_span(&id),
                str_at(df, "engine", i)?.unwrap_or_default(),
                thousands(u64_at(df, "prompt_tokens", i)?.unwrap_or(0)),
                thousands(u64_at(df, "gen_tokens", i)?.unwrap_or(0)),
                format!("{:.0}", f64_at(df, "seconds", i)?.unwrap_or(0.0)),
                cost,
            ]);
        }
        md.push_str("\nTokens, time and API cost (summed over every session of a run; cost from the price table in the \
                     baseline TOML, `-` for local engines):\n\n");
        let headers: Vec<String> = ["Run", "Engine", "Prompt tokens", "Generated tokens", "Seconds", "Cost (USD)"].iter().map(|h| h.to_string()).collect();
        md.push_str(&render_markdown(&headers, &usage_rows));
        md.push('\n');
    }

    md.push_str("## Paper rows\n\n");
    md.push_str(&format!("Source: {}. Caption: \"{}\"\n\n", paper.citation, paper.caption));
    for (mark, text) in &paper.notes {
        md.push_str(&format!("- {mark}: {text}.\n"));
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_pipes_and_pads() {
        let t = render_markdown(&["a".into(), "bb".into()], &[vec!["x|y".into(), "1".into()]]);
        assert_eq!(t, "| a    | bb  |\n| ---- | --- |\n| x\\|y | 1   |\n");
    }

    #[test]
    fn helpers() {
        assert_eq!(thousands(4590403), "4,590,403");
        assert_eq!(thousands(512), "512");
        assert_eq!(code_span("a`b"), "`` a`b ``");
        assert_eq!(code_span("ab"), "`ab`");
    }
}
