//! `report tasks`: several tasks' `report results` tables as one, laid out as the paper's
//! Table 2 (task and method as rows, parties as columns, acc with its interval in each cell).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::output::{self, Commit, Kind};
use crate::report::results::{acc_cell, round_label, RESULTS_FORMAT, RESULTS_VERSION};

pub const TASK_RESULTS_FORMAT: &str = "task-results";

/// One task's results table: `TASK=FILE`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReport {
    pub task: String,
    pub file: PathBuf,
}

impl std::str::FromStr for TaskReport {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<TaskReport> {
        match text.split_once('=') {
            Some((task, file)) if !task.is_empty() && !file.is_empty() => {
                Ok(TaskReport { task: task.into(), file: file.into() })
            }
            _ => Err(bad_usage(format!("--report '{text}': expected TASK=FILE"))),
        }
    }
}

/// A results table's rows as the Markdown needs them.
struct Row {
    task: String,
    label: String,
    party: String,
    model: String,
    cell: String,
}

/// `report tasks`: the results tables of `reports` stacked with a `task` column in front,
/// and the Markdown table (a row per task and method, a column per party).
pub fn tasks(reports: &[TaskReport], out: &Path, markdown: &Path) -> Result<()> {
    if reports.is_empty() {
        return Err(bad_usage("give one --report TASK=FILE per task"));
    }
    crate::cli::refuse_repeated("--report", reports, |r| r.task.clone())?;
    let inputs: Vec<&Path> = reports.iter().map(|r| r.file.as_path()).collect();
    output::claim(&[(out, Kind::parquet(TASK_RESULTS_FORMAT)), (markdown, Kind::Markdown)], &inputs)?;
    let (mut batches, mut rows, mut schema) = (Vec::new(), Vec::new(), None);
    for report in reports {
        let table = io::read_parquet(&report.file, RESULTS_FORMAT)?;
        rows.extend(markdown_rows(report, &table)?);
        for batch in &table.batches {
            let with_task = with_task_column(&report.task, batch)?;
            match &schema {
                None => schema = Some(with_task.schema()),
                Some(first) if *first != with_task.schema() => {
                    return Err(bad_input(&report.file, "its columns differ from the first report's"));
                }
                Some(_) => {}
            }
            batches.push(with_task);
        }
    }
    let schema = schema.ok_or_else(|| bad_input(&reports[0].file, "holds no rows"))?;
    let text = format!(
        "{}\nacc [95% bootstrap interval] / acc_norm, in % (mean ± sd over seeds where pooled); each task's own report has the paired tests and verdicts.",
        markdown_table(&rows)
    );
    let mut commit = Commit::new();
    io::stage_parquet(&mut commit, out, schema, &batches, &Provenance::new(TASK_RESULTS_FORMAT, 1, "report"))?;
    commit.file(markdown, Kind::Markdown, |f| {
        Ok(std::io::Write::write_all(f, format!("{}\n{}\n", output::MARKDOWN_MARK, text).as_bytes())?)
    })?;
    commit.finish()
}

fn with_task_column(task: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = vec![Arc::new(Field::new("task", DataType::Utf8, false))];
    fields.extend(batch.schema().fields().iter().cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![task; batch.num_rows()]))];
    columns.extend(batch.columns().iter().cloned());
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

fn markdown_rows(report: &TaskReport, table: &io::ParquetTable) -> Result<Vec<Row>> {
    if table.provenance.format_version != RESULTS_VERSION {
        return Err(bad_input(
            &report.file,
            format!(
                "a results table of version {}, this report reads {RESULTS_VERSION}",
                table.provenance.format_version
            ),
        ));
    }
    let (methods, parties, models) = (table.strings("method")?, table.strings("party")?, table.strings("model")?);
    let rounds = table.optional_values::<UInt32Type>("round")?;
    let f64s = |name: &str| table.values::<Float64Type>(name);
    let (acc, low, high, acc_norm, sd) =
        (f64s("acc")?, f64s("acc_low")?, f64s("acc_high")?, f64s("acc_norm")?, f64s("acc_sd")?);
    let (seeds, n) = (table.values::<UInt32Type>("seeds")?, table.values::<arrow_array::types::UInt64Type>("n")?);
    // A row that no evaluation could give is refused, not copied.
    let share = |v: f64| (0.0..=1.0).contains(&v);
    if let Some(i) = (0..methods.len()).find(|&i| {
        let possible =
            [acc[i], low[i], high[i], acc_norm[i]].into_iter().all(share) && low[i] <= high[i] && sd[i] >= 0.0;
        !possible || n[i] == 0 || seeds[i] == 0
    }) {
        return Err(bad_input(
            &report.file,
            format!(
                "row {} ({} {}): acc {} [{}, {}], acc_norm {}, sd {}, n {}, seeds {} cannot come from an evaluation",
                i + 1,
                methods[i],
                parties[i],
                acc[i],
                low[i],
                high[i],
                acc_norm[i],
                sd[i],
                n[i],
                seeds[i]
            ),
        ));
    }
    Ok((0..methods.len())
        .map(|i| Row {
            task: report.task.clone(),
            label: round_label(&methods[i], rounds[i]),
            party: parties[i].clone(),
            model: models[i].clone(),
            cell: acc_cell(acc[i], sd[i], seeds[i] as usize, (low[i], high[i]), acc_norm[i]),
        })
        .collect())
}

/// Rows in order of task, then of each method's first appearance; parties in order of first appearance.
fn markdown_table(rows: &[Row]) -> String {
    let mut parties: Vec<(&str, &str)> = Vec::new();
    let mut lines: Vec<(&str, &str)> = Vec::new();
    let mut cells: BTreeMap<(&str, &str, &str), &str> = BTreeMap::new();
    for r in rows {
        if !parties.iter().any(|(p, _)| *p == r.party) {
            parties.push((&r.party, &r.model));
        }
        if !lines.contains(&(&r.task, &r.label)) {
            lines.push((&r.task, &r.label));
        }
        cells.insert((&r.task, &r.label, &r.party), &r.cell);
    }
    let header: Vec<String> = parties.iter().map(|(p, m)| format!("{p} ({m})")).collect();
    let mut out = format!("| task | method | {} |\n|---|---|{}\n", header.join(" | "), "---|".repeat(parties.len()));
    for (task, label) in lines {
        let line: Vec<&str> =
            parties.iter().map(|(p, _)| cells.get(&(task, label, *p)).copied().unwrap_or("–")).collect();
        out.push_str(&format!("| {task} | {label} | {} |\n", line.join(" | ")));
    }
    out
}
