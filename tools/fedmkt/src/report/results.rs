//! `report results`: a run's results as the paper's tables (Tables 2–4: methods as rows,
//! parties as columns, acc / acc_norm in each cell), paired comparisons and claims' verdicts.
//!
//! The tool knows nothing of rounds or pipelines: the Makefile names every entry. A result
//! entry is `METHOD,ROUND,PARTY=FILE` (ROUND `-` for a baseline, FILE an `evaluate` summary);
//! a communication entry is `ROUND,PARTY,SENT,RECEIVED,ADAPTER,TOKENS` (`-` for nothing sent
//! or received).
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::output::{self, Commit, Kind};
use crate::report::evidence::{self, CellStats, Outcomes, Paired};

pub const RESULTS_FORMAT: &str = "results";
/// The `results` format version this tool writes and reads.
pub const RESULTS_VERSION: u32 = 2;
/// The party of the clients' mean (see [`with_clients_mean`]); its rows have no file.
pub const CLIENTS_MEAN: &str = "clients-mean";
pub const PAIRED_FORMAT: &str = "paired";

/// One evaluated model: which method and round produced it, for which party.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultEntry {
    pub method: String,
    pub round: Option<u32>,
    pub party: String,
    pub file: PathBuf,
    /// The training seed's run (its folder name) when entries of several seeds are pooled.
    pub seed: Option<String>,
}

impl std::str::FromStr for ResultEntry {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<ResultEntry> {
        let malformed = || bad_usage(format!("--result '{text}': expected METHOD,ROUND,PARTY=FILE"));
        let (label, file) = text.split_once('=').ok_or_else(malformed)?;
        let fields: Vec<&str> = label.split(',').collect();
        let [method, round, party] = fields[..] else { return Err(malformed()) };
        let round = if round == "-" { None } else { Some(round.parse().map_err(|_| malformed())?) };
        Ok(ResultEntry { method: method.into(), round, party: party.into(), file: file.into(), seed: None })
    }
}

/// An entry with its scores, read from `evaluate`'s JSON summary, and the per-sample
/// outcomes of the predictions beside it.
struct Score {
    entry: ResultEntry,
    model: String,
    n: u64,
    acc: f64,
    acc_norm: f64,
    outcomes: Outcomes,
    stats: CellStats,
    /// Training seeds pooled into this score (1 without `--reports`), and the standard
    /// deviation of acc across them (0 for one).
    seeds: usize,
    acc_sd: f64,
}

fn read_score(entry: &ResultEntry) -> Result<Score> {
    if entry.file.extension().is_some_and(|e| e == "parquet") {
        return score_of_predictions(entry);
    }
    let text = std::fs::read_to_string(&entry.file).map_err(|e| bad_input(&entry.file, format!("cannot read: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_input(&entry.file, format!("not an evaluate summary: {e}")))?;
    let number = |key: &str| {
        json[key]
            .as_f64()
            .ok_or_else(|| bad_input(&entry.file, format!("no number '{key}' (not an evaluate summary?)")))
    };
    let found = json["fedmkt_format"].as_str().unwrap_or("none");
    if found != crate::eval::SUMMARY_FORMAT {
        return Err(bad_input(
            &entry.file,
            format!("expected an evaluate summary (fedmkt_format '{}'), found '{found}'", crate::eval::SUMMARY_FORMAT),
        ));
    }
    let (n, acc, acc_norm) = (number("n")?, number("acc")?, number("acc_norm")?);
    if n < 1.0 || n.fract() != 0.0 || ![acc, acc_norm].iter().all(|a| (0.0..=1.0).contains(a)) {
        return Err(bad_input(
            &entry.file,
            format!("n {n}, acc {acc}, acc_norm {acc_norm}: need n ≥ 1 and accuracies within 0..=1"),
        ));
    }
    let model = json["model"]
        .as_str()
        .map(|m| Path::new(m).file_name().map_or(m.to_string(), |n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let predictions = crate::eval::predictions_path(&entry.file);
    let outcomes = evidence::read_outcomes(&predictions)?;
    if outcomes.ids.len() as f64 != n {
        return Err(bad_input(
            &predictions,
            format!("holds {} predictions, its summary says n = {n}", outcomes.ids.len()),
        ));
    }
    for (name, claimed, counted) in [("acc", acc, &outcomes.correct), ("acc_norm", acc_norm, &outcomes.correct_norm)] {
        let recomputed = mean(counted);
        if (claimed - recomputed).abs() > 1e-9 {
            return Err(bad_input(
                &entry.file,
                format!("says {name} {claimed}, its predictions {} give {recomputed}", predictions.display()),
            ));
        }
    }
    Ok(score(entry, model, outcomes, (acc, acc_norm)))
}

/// An entry whose FILE is `evaluate`'s predictions alone (a sweep's `lr-<rate>.parquet`):
/// every figure comes from them; the model is not named.
fn score_of_predictions(entry: &ResultEntry) -> Result<Score> {
    let outcomes = evidence::read_outcomes(&entry.file)?;
    if outcomes.ids.is_empty() {
        return Err(bad_input(&entry.file, "holds no predictions"));
    }
    let accuracies = (mean(&outcomes.correct), mean(&outcomes.correct_norm));
    Ok(score(entry, String::new(), outcomes, accuracies))
}

/// `acc` and `acc_norm` as the summary states them (equal to its predictions' to 1e-9).
fn score(entry: &ResultEntry, model: String, outcomes: Outcomes, (acc, acc_norm): (f64, f64)) -> Score {
    let stats = evidence::cell_stats(&outcomes);
    let n = outcomes.ids.len() as u64;
    Score { entry: entry.clone(), model, n, acc, acc_norm, outcomes, stats, seeds: 1, acc_sd: 0.0 }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The entries of an earlier `report results` table, tagged with its run's folder name: one
/// training seed of a pipeline (`make seeds`).
fn read_report_entries(path: &Path) -> Result<Vec<ResultEntry>> {
    let table = io::read_parquet(path, RESULTS_FORMAT)?;
    let seed = path.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
    let strings = |name: &str| table.strings(name);
    let rounds = table.optional_values::<arrow_array::types::UInt32Type>("round")?;
    let (methods, parties, files) = (strings("method")?, strings("party")?, strings("file")?);
    Ok((0..methods.len())
        .filter(|&i| parties[i] != CLIENTS_MEAN)
        .map(|i| ResultEntry {
            method: methods[i].clone(),
            round: rounds[i],
            party: parties[i].clone(),
            file: files[i].clone().into(),
            seed: seed.clone(),
        })
        .collect())
}

/// Beside the scores, the clients' mean wherever a method's round (of one seed) has two or more
/// clients, all of one base model: the paper reports homogeneous clients as their average
/// (Table 3). Per test sample it is the mean of the clients' outcomes, so its intervals and
/// paired tests resample test samples, as for seeds (the clients answer the same questions).
/// Clients of different models are left apart: their mean would describe no model.
fn with_clients_mean(mut scores: Vec<Score>) -> Result<Vec<Score>> {
    let clients = scores.iter().filter(|s| s.entry.party != "server");
    let groups = group_by(clients, |s| (s.entry.method.clone(), s.entry.round, s.entry.seed.clone()));
    let means = groups
        .into_iter()
        .filter(|g| g.len() > 1 && g.iter().all(|s| s.model == g[0].model))
        .map(|clients| clients_mean(&clients))
        .collect::<Result<Vec<_>>>()?;
    scores.extend(means);
    Ok(scores)
}

fn clients_mean(clients: &[&Score]) -> Result<Score> {
    let runs: Vec<(&Outcomes, &Path)> = clients.iter().map(|s| (&s.outcomes, s.entry.file.as_path())).collect();
    let outcomes = evidence::mean_outcomes(&runs)?;
    let mean = |f: fn(&Score) -> f64| clients.iter().map(|s| f(s)).sum::<f64>() / clients.len() as f64;
    Ok(Score {
        entry: ResultEntry { party: CLIENTS_MEAN.into(), file: PathBuf::new(), ..clients[0].entry.clone() },
        model: clients[0].model.clone(),
        n: outcomes.ids.len() as u64,
        acc: mean(|s| s.acc),
        acc_norm: mean(|s| s.acc_norm),
        stats: evidence::cell_stats(&outcomes),
        outcomes,
        seeds: 1,
        acc_sd: 0.0,
    })
}

/// `items` in groups of equal `key`, each group and the groups in the order first met.
fn group_by<T, K: PartialEq>(items: impl IntoIterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        match groups.iter_mut().find(|g| key(&g[0]) == key(&item)) {
            Some(group) => group.push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}

/// One score per method, round and party: the entries of several seeds pooled. acc is the
/// mean over seeds with their standard deviation; each test sample's outcomes are averaged
/// over the seeds, so the intervals and paired tests resample the test samples (the seeds
/// share them: counting a sample once per seed would treat one question as several).
fn pool(scores: Vec<Score>) -> Result<Vec<Score>> {
    let groups = group_by(scores, |s| (s.entry.method.clone(), s.entry.round, s.entry.party.clone()));
    groups.into_iter().map(pool_group).collect()
}

fn pool_group(mut group: Vec<Score>) -> Result<Score> {
    if group.len() == 1 {
        return Ok(group.remove(0));
    }
    let seeds = group.len();
    let accs: Vec<f64> = group.iter().map(|s| s.acc).collect();
    let mean = accs.iter().sum::<f64>() / seeds as f64;
    let acc_sd = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (seeds - 1) as f64).sqrt();
    let acc_norm = group.iter().map(|s| s.acc_norm).sum::<f64>() / seeds as f64;
    let runs: Vec<(&Outcomes, &Path)> = group.iter().map(|s| (&s.outcomes, s.entry.file.as_path())).collect();
    let outcomes = evidence::mean_outcomes(&runs)?;
    let first = group.remove(0);
    Ok(Score {
        n: outcomes.ids.len() as u64,
        stats: evidence::cell_stats(&outcomes),
        outcomes,
        acc: mean,
        acc_norm,
        seeds,
        acc_sd,
        ..first
    })
}

/// Every entry of a subject method (FedMKT, FedCoLLM) against every entry of another method on
/// the same party: a baseline without rounds, or the same round of a method with rounds. And
/// against its own earlier rounds on that party: whether more rounds help is a paired question
/// too, the same test samples answered by both.
fn comparisons<'a>(scores: &'a [Score], subjects: &[String]) -> Result<Vec<(&'a Score, &'a Score, Paired)>> {
    let mut rows = Vec::new();
    for a in scores.iter().filter(|s| subjects.contains(&s.entry.method)) {
        let against = scores.iter().filter(|b| {
            let other_method =
                !subjects.contains(&b.entry.method) && (b.entry.round.is_none() || b.entry.round == a.entry.round);
            let earlier_round =
                b.entry.method == a.entry.method && b.entry.round.is_some_and(|r| Some(r) < a.entry.round);
            b.entry.party == a.entry.party && (other_method || earlier_round)
        });
        for b in against {
            rows.push((a, b, evidence::paired(&a.outcomes, &b.outcomes, &a.entry.file, &b.entry.file)?));
        }
    }
    Ok(rows)
}

/// The paired comparisons in Markdown: differences in percentage points (accuracy) and nats
/// (gold log-likelihood per byte), each with its 95% paired-bootstrap interval.
fn paired_table(rows: &[(&Score, &Score, Paired)]) -> String {
    let mut out = String::from(
        "| method | party | against | n | Δ acc (pp) | right only under each | McNemar p | Δ gold log-lik/byte |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (a, b, p) in rows {
        let nats = |e: &crate::report::stats::Estimate| format!("{:+.4} [{:+.4}, {:+.4}]", e.mean, e.low, e.high);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:+.1} [{:+.1}, {:+.1}] | {} / {} | {:.3} | {} |\n",
            method_label(&a.entry),
            a.entry.party,
            method_label(&b.entry),
            p.n,
            100.0 * p.acc.mean,
            100.0 * p.acc.low,
            100.0 * p.acc.high,
            p.only_a,
            p.only_b,
            p.mcnemar_p,
            nats(&p.gold_per_byte)
        ));
    }
    out
}

/// α of every verdict.
const ALPHA: f64 = 0.05;

/// What the paper claims of a comparison, and how a verdict on accuracy is reached.
#[derive(Clone, Copy)]
enum Claim {
    /// Better: holds when significantly better, contradicted when significantly worse.
    Better,
    /// At least as good: contradicted only when significantly worse.
    NotWorse,
    /// Comparable: the difference and its interval; "differs" when significant.
    Comparable,
}

/// The papers' claims: (subject method, subject party is the server?, against, claim, wording).
/// FedMKT's from its Tables 2–4; FedCoLLM's from its abstract (its clients gain from the
/// server's knowledge over FedAvg and their own training, its LLM approaches one trained
/// centrally), and the share of its KD, measured as for FedMKT (against its noKD ablation).
const CLAIMS: [(&str, bool, &str, Claim, &str); 12] = [
    ("FedMKT", false, "Standalone", Claim::Better, "SLM FedMKT > Standalone"),
    ("FedMKT", false, "Zero-Shot", Claim::Better, "SLM FedMKT > Zero-Shot"),
    ("FedMKT", true, "Zero-Shot", Claim::NotWorse, "LLM FedMKT ≥ Zero-Shot"),
    ("FedMKT", true, "Centralized", Claim::Comparable, "LLM FedMKT comparable to Centralized"),
    ("FedMKT", false, "FedAvg", Claim::Better, "SLM FedMKT > FedAvg (homogeneous)"),
    ("FedMKT", false, "LLM2SLM", Claim::Better, "SLM FedMKT > LLM2SLM (one-to-one)"),
    ("FedCoLLM", false, "FedAvg", Claim::Better, "SLM FedCoLLM > FedAvg"),
    ("FedCoLLM", false, "Standalone", Claim::Better, "SLM FedCoLLM > Standalone"),
    ("FedCoLLM", true, "Zero-Shot", Claim::NotWorse, "LLM FedCoLLM ≥ Zero-Shot"),
    ("FedCoLLM", true, "Centralized", Claim::Comparable, "LLM FedCoLLM comparable to Centralized"),
    ("FedCoLLM", false, "FedCoLLM-noKD", Claim::Better, "SLM FedCoLLM > FedCoLLM-noKD (KD's share)"),
    ("FedCoLLM", true, "FedCoLLM-noKD", Claim::Better, "LLM FedCoLLM > FedCoLLM-noKD (KD's share)"),
];

fn verdict(claim: Claim, p: &Paired) -> &'static str {
    let significant = p.mcnemar_p < ALPHA;
    match (claim, significant, p.acc.mean > 0.0) {
        (Claim::Comparable, true, _) => "differs",
        (Claim::Comparable, false, _) => "no significant difference",
        (_, true, true) => "holds",
        (_, true, false) => "contradicted",
        (Claim::Better, false, _) => "not shown",
        (Claim::NotWorse, false, _) => "not contradicted (no significant difference)",
    }
}

/// The paper's claims, one line per party and round they apply to, with their verdicts at
/// α = 0.05 on accuracy (exact McNemar) beside the paired differences behind them.
fn claims_table(rows: &[(&Score, &Score, Paired)]) -> String {
    let mut out = format!(
        "| claim | party | round | Δ acc (pp) | McNemar p | Δ gold log-lik/byte | verdict (α = {ALPHA}) |\n|---|---|---|---|---|---|---|\n"
    );
    let mut lines = 0;
    for (subject, on_server, against, claim, wording) in CLAIMS {
        let applies = |(a, b, _): &&(&Score, &Score, Paired)| {
            a.entry.method == subject && b.entry.method == against && (a.entry.party == "server") == on_server
        };
        for (a, _, p) in rows.iter().filter(applies) {
            out.push_str(&format!(
                "| {wording} | {} | {} | {:+.1} [{:+.1}, {:+.1}] | {:.3} | {:+.4} [{:+.4}, {:+.4}] | {} |\n",
                a.entry.party,
                a.entry.round.map_or("–".to_string(), |r| r.to_string()),
                100.0 * p.acc.mean,
                100.0 * p.acc.low,
                100.0 * p.acc.high,
                p.mcnemar_p,
                p.gold_per_byte.mean,
                p.gold_per_byte.low,
                p.gold_per_byte.high,
                verdict(claim, p)
            ));
            lines += 1;
        }
    }
    match lines {
        0 => "None applies to these methods (FedMKT's and FedCoLLM's are registered: `report/results.rs`, CLAIMS).\n"
            .into(),
        _ => out,
    }
}

fn paired_batch(rows: &[(&Score, &Score, Paired)]) -> Result<RecordBatch> {
    let f64s = |f: &dyn Fn(&Paired) -> f64| -> arrow_array::ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(_, _, p)| f(p))))
    };
    let strings = |f: &dyn Fn(&Score, &Score) -> String| -> arrow_array::ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(a, b, _)| f(a, b))))
    };
    let columns: Vec<(&str, arrow_array::ArrayRef)> = vec![
        ("method", strings(&|a, _| a.entry.method.clone())),
        ("round", Arc::new(UInt32Array::from_iter(rows.iter().map(|(a, _, _)| a.entry.round)))),
        ("party", strings(&|a, _| a.entry.party.clone())),
        ("against_method", strings(&|_, b| b.entry.method.clone())),
        ("against_round", Arc::new(UInt32Array::from_iter(rows.iter().map(|(_, b, _)| b.entry.round)))),
        ("n", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(_, _, p)| p.n as u64)))),
        ("acc_diff", f64s(&|p| p.acc.mean)),
        ("acc_diff_low", f64s(&|p| p.acc.low)),
        ("acc_diff_high", f64s(&|p| p.acc.high)),
        ("only_method_right", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(_, _, p)| p.only_a)))),
        ("only_against_right", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(_, _, p)| p.only_b)))),
        ("mcnemar_p", f64s(&|p| p.mcnemar_p)),
        ("gold_loglik_per_byte_diff", f64s(&|p| p.gold_per_byte.mean)),
        ("gold_loglik_per_byte_diff_low", f64s(&|p| p.gold_per_byte.low)),
        ("gold_loglik_per_byte_diff_high", f64s(&|p| p.gold_per_byte.high)),
        ("margin_diff", f64s(&|p| p.margin.mean)),
        ("margin_diff_low", f64s(&|p| p.margin.low)),
        ("margin_diff_high", f64s(&|p| p.margin.high)),
    ];
    let nullable = |name: &str| name.ends_with("round");
    let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), nullable(n))).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect())?)
}

fn method_label(entry: &ResultEntry) -> String {
    round_label(&entry.method, entry.round)
}

/// A table row's label: the method, with its round when it has rounds ("FedMKT (round 2)").
pub fn round_label(method: &str, round: Option<u32>) -> String {
    match round {
        Some(r) => format!("{method} (round {r})"),
        None => method.to_string(),
    }
}

/// Rows in first-appearance order of their method label, columns in first-appearance order
/// of their party; each cell an [`acc_cell`].
fn markdown_table(scores: &[Score]) -> String {
    let mut parties: Vec<(String, String)> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(String, String), String> = BTreeMap::new();
    for s in scores {
        if !parties.iter().any(|(p, _)| *p == s.entry.party) {
            parties.push((s.entry.party.clone(), s.model.clone()));
        }
        let row = method_label(&s.entry);
        if !rows.contains(&row) {
            rows.push(row.clone());
        }
        let interval = (s.stats.acc.low, s.stats.acc.high);
        let acc = if s.seeds > 1 { s.acc } else { s.stats.acc.mean };
        cells.insert((row, s.entry.party.clone()), acc_cell(acc, s.acc_sd, s.seeds, interval, s.acc_norm));
    }
    let mut out = format!(
        "| method | {} |\n|---|{}\n",
        parties
            .iter()
            .map(|(p, m)| if m.is_empty() { p.clone() } else { format!("{p} ({m})") })
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(parties.len())
    );
    for row in &rows {
        let line: Vec<String> = parties
            .iter()
            .map(|(p, _)| cells.get(&(row.clone(), p.clone())).cloned().unwrap_or_else(|| "–".into()))
            .collect();
        out.push_str(&format!("| {row} | {} |\n", line.join(" | ")));
    }
    out
}

/// A table cell in percent: "acc [low, high] / acc_norm", with "± sd" after acc when several
/// seeds are pooled (acc then their mean; the interval over all their samples).
pub fn acc_cell(acc: f64, sd: f64, seeds: usize, (low, high): (f64, f64), acc_norm: f64) -> String {
    let spread = if seeds > 1 { format!(" ± {:.1}", 100.0 * sd) } else { String::new() };
    format!("{:.1}{spread} [{:.1}, {:.1}] / {:.1}", 100.0 * acc, 100.0 * low, 100.0 * high, 100.0 * acc_norm)
}

fn results_batch(scores: &[Score]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("round", DataType::UInt32, true),
        Field::new("party", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("n", DataType::UInt64, false),
        Field::new("acc", DataType::Float64, false),
        Field::new("acc_norm", DataType::Float64, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("acc_low", DataType::Float64, false),
        Field::new("acc_high", DataType::Float64, false),
        Field::new("acc_norm_low", DataType::Float64, false),
        Field::new("acc_norm_high", DataType::Float64, false),
        Field::new("gold_loglik_per_byte", DataType::Float64, false),
        Field::new("gold_loglik_per_byte_low", DataType::Float64, false),
        Field::new("gold_loglik_per_byte_high", DataType::Float64, false),
        Field::new("margin", DataType::Float64, false),
        Field::new("margin_low", DataType::Float64, false),
        Field::new("margin_high", DataType::Float64, false),
        Field::new("seeds", DataType::UInt32, false),
        Field::new("acc_sd", DataType::Float64, false),
    ]));
    let f64s = |f: &dyn Fn(&CellStats) -> f64| -> arrow_array::ArrayRef {
        Arc::new(Float64Array::from_iter_values(scores.iter().map(|s| f(&s.stats))))
    };
    let strings = |f: &dyn Fn(&Score) -> String| Arc::new(StringArray::from_iter_values(scores.iter().map(f)));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            strings(&|s| s.entry.method.clone()),
            Arc::new(UInt32Array::from_iter(scores.iter().map(|s| s.entry.round))),
            strings(&|s| s.entry.party.clone()),
            strings(&|s| s.model.clone()),
            Arc::new(UInt64Array::from_iter_values(scores.iter().map(|s| s.n))),
            Arc::new(Float64Array::from_iter_values(scores.iter().map(|s| s.acc))),
            Arc::new(Float64Array::from_iter_values(scores.iter().map(|s| s.acc_norm))),
            strings(&|s| s.entry.file.display().to_string()),
            f64s(&|c| c.acc.low),
            f64s(&|c| c.acc.high),
            f64s(&|c| c.acc_norm.low),
            f64s(&|c| c.acc_norm.high),
            f64s(&|c| c.gold_per_byte.mean),
            f64s(&|c| c.gold_per_byte.low),
            f64s(&|c| c.gold_per_byte.high),
            f64s(&|c| c.margin.mean),
            f64s(&|c| c.margin.low),
            f64s(&|c| c.margin.high),
            Arc::new(UInt32Array::from_iter_values(scores.iter().map(|s| s.seeds as u32))),
            Arc::new(Float64Array::from_iter_values(scores.iter().map(|s| s.acc_sd))),
        ],
    )?)
}

/// `report results`: the long table as Parquet (acc with its interval and the continuous
/// metrics), the Markdown table in the paper's layout followed by the paired comparisons of
/// every `subjects` method against the other methods, and those comparisons as Parquet.
/// With `copy_into`, every entry's evaluation is copied into that folder (see
/// [`evaluation_copies`]) and the table names the copies.
pub fn results(
    given: &[ResultEntry],
    reports: &[&Path],
    subjects: &[String],
    copy_into: Option<&Path>,
    out: &Path,
    paired: &Path,
    markdown: &Path,
) -> Result<()> {
    crate::cli::refuse_repeated("--reports", reports, crate::cli::path_key)?;
    let key = |e: &ResultEntry| format!("{},{},{}", e.method, e.round.map_or("-".into(), |r| r.to_string()), e.party);
    crate::cli::refuse_repeated("--result", given, key)?;
    let mut entries = given.to_vec();
    for report in reports {
        entries.extend(read_report_entries(report)?);
    }
    if entries.is_empty() {
        return Err(bad_usage("give --result entries or --reports tables"));
    }
    let predictions: Vec<PathBuf> = entries.iter().map(|e| crate::eval::predictions_path(&e.file)).collect();
    let inputs: Vec<&Path> = entries
        .iter()
        .map(|e| e.file.as_path())
        .chain(predictions.iter().map(PathBuf::as_path))
        .chain(reports.iter().copied())
        .collect();
    let copies = copy_into.map(|dir| evaluation_copies(&entries, dir)).unwrap_or_default();
    let mut outputs =
        vec![(out, Kind::parquet(RESULTS_FORMAT)), (paired, Kind::parquet(PAIRED_FORMAT)), (markdown, Kind::Markdown)];
    for (summary, predictions) in &copies {
        outputs.push((summary, Kind::json(crate::eval::SUMMARY_FORMAT)));
        outputs.push((predictions, Kind::parquet(crate::eval::PREDICTIONS_FORMAT)));
    }
    output::claim(&outputs, &inputs)?;
    let mut scores = entries.iter().map(read_score).collect::<Result<Vec<_>>>()?;
    let mut commit = Commit::new();
    for ((score, (summary, predictions)), source) in scores.iter_mut().zip(&copies).zip(&entries) {
        stage_copy(&mut commit, &source.file, summary, Kind::json(crate::eval::SUMMARY_FORMAT))?;
        let source_predictions = crate::eval::predictions_path(&source.file);
        stage_copy(&mut commit, &source_predictions, predictions, Kind::parquet(crate::eval::PREDICTIONS_FORMAT))?;
        score.entry.file = summary.clone();
    }
    let scores = pool(with_clients_mean(scores)?)?;
    let rows = comparisons(&scores, subjects)?;
    let text = format!(
        "{}\nacc [95% bootstrap interval, {} resamples] / acc_norm, in %. Paired against the other methods on the same samples:\n\n{}\nThe paper's claims:\n\n{}",
        markdown_table(&scores),
        crate::report::stats::RESAMPLES,
        paired_table(&rows),
        claims_table(&rows)
    );
    let batch = results_batch(&scores)?;
    io::stage_parquet(
        &mut commit,
        out,
        batch.schema(),
        &[batch],
        &Provenance::new(RESULTS_FORMAT, RESULTS_VERSION, "report"),
    )?;
    let batch = paired_batch(&rows)?;
    let provenance = Provenance::new(PAIRED_FORMAT, 1, "report").extra("bootstrap_seed", evidence::BOOTSTRAP_SEED);
    io::stage_parquet(
        &mut commit,
        paired,
        batch.schema(),
        &[batch],
        &provenance.extra("resamples", crate::report::stats::RESAMPLES),
    )?;
    stage_markdown(&mut commit, markdown, &text)?;
    commit.finish()
}

/// Where `--copy-into` puts each entry's evaluation: `<method>[-round-<n>]-<party>.json` and
/// its predictions beside it, so that a folder of results holds everything its report was
/// computed from (two entries with one label, as of two seeds, are refused as one output).
fn evaluation_copies(entries: &[ResultEntry], dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    entries
        .iter()
        .map(|e| {
            let round = e.round.map(|r| format!("-round-{r}")).unwrap_or_default();
            let summary = dir.join(format!("{}{round}-{}.json", e.method, e.party));
            let predictions = crate::eval::predictions_path(&summary);
            (summary, predictions)
        })
        .collect()
}

/// A byte-for-byte copy of `source`, staged at `dest`.
fn stage_copy(commit: &mut Commit, source: &Path, dest: &Path, kind: Kind) -> Result<()> {
    let mut reader = std::fs::File::open(source).map_err(|e| bad_input(source, format!("cannot read: {e}")))?;
    commit.file(dest, kind, |f| {
        std::io::copy(&mut reader, f)?;
        Ok(())
    })
}

fn stage_markdown(commit: &mut Commit, markdown: &Path, text: &str) -> Result<()> {
    commit.file(markdown, Kind::Markdown, |f| Ok(writeln!(f, "{}\n{}", output::MARKDOWN_MARK, text.trim_end())?))
}

/// A report's two outputs may be written (see [`output::claim`]).
pub(crate) fn claim_report(out: &Path, markdown: &Path, format: &str, inputs: &[&Path]) -> Result<()> {
    output::claim(&[(out, Kind::parquet(format)), (markdown, Kind::Markdown)], inputs)
}

/// The table and its Markdown (after the mark that says fedmkt wrote it), moved into place together.
pub(crate) fn write_report(
    out: &Path,
    markdown: &Path,
    batch: RecordBatch,
    provenance: &Provenance,
    text: &str,
) -> Result<()> {
    let mut commit = Commit::new();
    io::stage_parquet(&mut commit, out, batch.schema(), &[batch], provenance)?;
    stage_markdown(&mut commit, markdown, text)?;
    commit.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_malformed_ones_are_refused() {
        let e: ResultEntry = "FedMKT,2,client-1=a/b.json".parse().unwrap();
        assert_eq!(
            (e.method.as_str(), e.round, e.party.as_str(), e.file.as_path()),
            ("FedMKT", Some(2), "client-1", Path::new("a/b.json"))
        );
        assert_eq!("Zero-Shot,-,server=x.json".parse::<ResultEntry>().unwrap().round, None);
        assert!("FedMKT,x,client-1=a.json".parse::<ResultEntry>().is_err());
        assert!("FedMKT,1=a.json".parse::<ResultEntry>().is_err());
    }

    /// Every sample right (acc 1) or every sample wrong (acc 0): degenerate intervals, so the
    /// cells can be written by hand.
    fn score(method: &str, round: Option<u32>, party: &str, acc: f64) -> Score {
        let outcomes = Outcomes {
            ids: (0..4).map(|i| i.to_string()).collect(),
            correct: vec![acc; 4],
            correct_norm: vec![acc; 4],
            gold_per_byte: vec![-1.0; 4],
            margin: vec![acc - 0.5; 4],
        };
        Score {
            entry: ResultEntry { method: method.into(), round, party: party.into(), file: "f".into(), seed: None },
            model: "m".into(),
            n: 4,
            acc,
            acc_norm: acc / 2.0,
            stats: evidence::cell_stats(&outcomes),
            outcomes,
            seeds: 1,
            acc_sd: 0.0,
        }
    }

    #[test]
    fn the_table_has_methods_as_rows_and_parties_as_columns() {
        let table = markdown_table(&[
            score("Zero-Shot", None, "server", 0.0),
            score("FedMKT", Some(1), "client-1", 1.0),
            score("FedMKT", Some(1), "server", 1.0),
        ]);
        assert_eq!(table, "| method | server (m) | client-1 (m) |\n|---|---|---|\n| Zero-Shot | 0.0 [0.0, 0.0] / 0.0 | – |\n| FedMKT (round 1) | 100.0 [100.0, 100.0] / 50.0 | 100.0 [100.0, 100.0] / 50.0 |\n");
    }

    /// Each comparison as "subject vs the model it is compared with", by their row labels.
    fn labels(rows: &[(&Score, &Score, Paired)]) -> Vec<String> {
        rows.iter().map(|(a, b, _)| format!("{} vs {}", method_label(&a.entry), method_label(&b.entry))).collect()
    }

    #[test]
    fn subjects_are_compared_with_baselines_and_same_round_methods_on_their_party() {
        let scores = [
            score("Zero-Shot", None, "server", 0.0),
            score("FedAvg", Some(1), "server", 0.0),
            score("FedAvg", Some(2), "server", 0.0),
            score("FedMKT", Some(1), "server", 1.0),
            score("FedMKT", Some(1), "client-1", 1.0),
        ];
        let rows = comparisons(&scores, &["FedMKT".to_string()]).unwrap();
        assert_eq!(labels(&rows), ["FedMKT (round 1) vs Zero-Shot", "FedMKT (round 1) vs FedAvg (round 1)"]);
        let paired = &rows[0].2;
        assert_eq!((paired.acc.mean, paired.only_a, paired.only_b), (1.0, 4, 0));
        assert!((paired.mcnemar_p - 2.0 / 16.0).abs() < 1e-12);
    }

    /// Round 3 is compared with rounds 1 and 2 of its own method, never the other way round.
    #[test]
    fn later_rounds_are_compared_with_earlier_rounds_of_their_method() {
        let scores = [
            score("FedMKT", Some(1), "server", 0.0),
            score("FedMKT", Some(2), "server", 0.0),
            score("FedMKT", Some(3), "server", 1.0),
            score("FedMKT", Some(1), "client-1", 0.0),
        ];
        let rows = comparisons(&scores, &["FedMKT".to_string()]).unwrap();
        assert_eq!(
            labels(&rows),
            [
                "FedMKT (round 2) vs FedMKT (round 1)",
                "FedMKT (round 3) vs FedMKT (round 1)",
                "FedMKT (round 3) vs FedMKT (round 2)"
            ]
        );
        assert_eq!(rows[1].2.acc.mean, 1.0, "round 3 right where round 1 was wrong");
    }

    /// Two seeds of four test samples pool into four samples, each with its mean over the
    /// seeds, not eight: the seeds answer the same questions.
    #[test]
    fn seeds_pool_into_mean_and_sd_over_the_same_samples() {
        let seeded = |acc: f64, seed: &str| {
            let mut s = score("FedMKT", Some(1), "server", acc);
            s.entry.seed = Some(seed.into());
            s
        };
        let pooled = pool(vec![seeded(1.0, "s1"), score("Zero-Shot", None, "server", 0.0), seeded(0.0, "s2")]).unwrap();
        assert_eq!(pooled.len(), 2, "one score per method, round and party");
        let fedmkt = &pooled[0];
        assert_eq!((fedmkt.seeds, fedmkt.n, fedmkt.acc), (2, 4, 0.5));
        assert!((fedmkt.acc_sd - 0.5f64.sqrt()).abs() < 1e-12, "sample sd of 1 and 0");
        assert_eq!(fedmkt.outcomes.ids, ["0", "1", "2", "3"]);
        assert_eq!(fedmkt.outcomes.correct, [0.5; 4]);
        assert_eq!(fedmkt.stats.acc.mean, 0.5);
        let mut other = seeded(1.0, "s3");
        other.outcomes.ids[3] = "9".into();
        assert!(pool(vec![seeded(1.0, "s1"), other]).is_err(), "seeds evaluated on other samples are refused");
    }

    /// Two clients of one model, one right on every sample and one on none: their mean is
    /// right half the time on each of the same four samples. The server stays apart, and so
    /// do clients of different models.
    #[test]
    fn clients_of_one_model_get_their_mean_beside_them() {
        let scores = with_clients_mean(vec![
            score("FedMKT", Some(1), "server", 1.0),
            score("FedMKT", Some(1), "client-1", 1.0),
            score("FedMKT", Some(1), "client-2", 0.0),
            score("Standalone", None, "client-1", 1.0),
        ])
        .unwrap();
        assert_eq!(scores.len(), 5, "one mean, for FedMKT's round (Standalone has one client)");
        let mean = &scores[4];
        assert_eq!(
            (mean.entry.method.as_str(), mean.entry.round, mean.entry.party.as_str()),
            ("FedMKT", Some(1), CLIENTS_MEAN)
        );
        assert_eq!((mean.n, mean.acc, mean.acc_norm, mean.entry.file.as_os_str()), (4, 0.5, 0.25, "".as_ref()));
        assert_eq!(mean.outcomes.correct, [0.5; 4]);
        assert_eq!(mean.stats.acc.mean, 0.5);
        let mut other_model = score("FedMKT", Some(1), "client-2", 0.0);
        other_model.model = "other".into();
        assert_eq!(with_clients_mean(vec![score("FedMKT", Some(1), "client-1", 1.0), other_model]).unwrap().len(), 2);
    }

    #[test]
    fn verdicts_follow_the_sign_and_the_exact_test() {
        let estimate = |mean| crate::report::stats::Estimate { mean, low: mean, high: mean };
        let paired = |only_a: u64, only_b: u64| Paired {
            n: 100,
            acc: estimate((only_a as f64 - only_b as f64) / 100.0),
            only_a,
            only_b,
            mcnemar_p: crate::report::stats::mcnemar_exact(only_a, only_b),
            gold_per_byte: estimate(0.0),
            margin: estimate(0.0),
        };
        // 12 against 2 discordant pairs: p = 0.013; 6 against 4: p = 0.75.
        assert_eq!(verdict(Claim::Better, &paired(12, 2)), "holds");
        assert_eq!(verdict(Claim::Better, &paired(2, 12)), "contradicted");
        assert_eq!(verdict(Claim::Better, &paired(6, 4)), "not shown");
        assert_eq!(verdict(Claim::NotWorse, &paired(4, 6)), "not contradicted (no significant difference)");
        assert_eq!(verdict(Claim::NotWorse, &paired(2, 12)), "contradicted");
        assert_eq!(verdict(Claim::Comparable, &paired(12, 2)), "differs");
    }
}
