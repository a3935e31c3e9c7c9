//! `report kd`: what knowledge distillation did in a run, party by party and round by round,
//! from `select`'s choices and `measure-kd`'s measures:
//!
//! - on the public set, for each sender, the share of samples it won in DualMinCE and its and
//!   the receiver's loss on them (how much better the teacher was where it taught);
//! - the teacher's entropy H(q) and q(gold) (targets that mostly repeat the label teach little
//!   beyond it);
//! - the receiver's KL to its teacher before and after its KD phase, on the public set (what
//!   it distilled) and on held-out samples (whether it learnt the teacher, not the samples);
//! - the same KL of the FedMKT-noKD ablation (the same schedule with λ = 1) against the same
//!   teacher, and the paired difference, FedMKT − noKD, over samples: KD's own share.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::kd_measure::{self, SampleMeasure};
use crate::report::results::{claim_report, write_report};
use crate::report::stats::{self, Estimate};
use crate::select::SELECTED_FORMAT;

pub const KD_REPORT_FORMAT: &str = "kd-report";

/// The teacher of a public-set row that pools every sender.
pub const ALL_SENDERS: &str = "all";

/// One party's measures in one round, on one set: before and after its KD phase, and the
/// noKD ablation's adapter of the same round (all against the same teacher).
#[derive(Debug, Clone, PartialEq)]
pub struct KdEntry {
    pub round: u32,
    pub party: String,
    /// `Public(selected file)`: the receiver's DualMinCE choices, its teacher on the public
    /// set; `HeldOut(sender)`: that sender's knowledge of held-out samples.
    pub teacher: Teacher,
    pub before: PathBuf,
    pub after: PathBuf,
    pub nokd: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Teacher {
    Public(PathBuf),
    HeldOut(String),
}

impl KdEntry {
    /// `ROUND,PARTY,TEACHER,BEFORE,AFTER[,NOKD]`: TEACHER is the selected file (`public`) or
    /// the sender's name (`held_out`).
    pub fn parse(text: &str, held_out: bool) -> Result<KdEntry> {
        let flag = if held_out { "--held-out" } else { "--public" };
        let malformed = || {
            bad_usage(format!("{flag} '{text}': expected ROUND,PARTY,{},BEFORE,AFTER[,NOKD]", teacher_word(held_out)))
        };
        let fields: Vec<&str> = text.split(',').collect();
        let (round, party, teacher, before, after, nokd) = match fields[..] {
            [r, p, t, b, a] => (r, p, t, b, a, None),
            [r, p, t, b, a, n] => (r, p, t, b, a, Some(PathBuf::from(n))),
            _ => return Err(malformed()),
        };
        Ok(KdEntry {
            round: round.parse().map_err(|_| malformed())?,
            party: party.into(),
            teacher: if held_out { Teacher::HeldOut(teacher.into()) } else { Teacher::Public(teacher.into()) },
            before: before.into(),
            after: after.into(),
            nokd,
        })
    }

    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.before.as_path(), self.after.as_path()];
        files.extend(self.nokd.as_deref());
        if let Teacher::Public(selected) = &self.teacher {
            files.push(selected);
        }
        files
    }
}

fn teacher_word(held_out: bool) -> &'static str {
    if held_out {
        "SENDER"
    } else {
        "SELECTED"
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Default)]
struct KdRow {
    round: u32,
    party: String,
    set: &'static str,
    teacher: String,
    samples: u32,
    won: Option<f64>,
    sender_loss: Option<f64>,
    receiver_loss: Option<f64>,
    entropy: Option<f64>,
    teacher_gold: Option<f64>,
    kl_before: Option<f64>,
    kl_after: Option<f64>,
    kl_nokd: Option<f64>,
    after_minus_nokd: Option<Estimate>,
}

/// The measures of one entry, read and checked to be of one teacher and one token file.
struct Measures {
    before: Vec<SampleMeasure>,
    after: Vec<SampleMeasure>,
    nokd: Option<Vec<SampleMeasure>>,
}

fn read_entry_measures(entry: &KdEntry) -> Result<Measures> {
    let (before, first) = kd_measure::read_measures(&entry.before)?;
    let mut read_like_first = |path: &Path| -> Result<Vec<SampleMeasure>> {
        let (measures, table) = kd_measure::read_measures(path)?;
        for role in ["teacher", "tokens"] {
            if table.input_hash(role)? != first.input_hash(role)? {
                return Err(bad_input(path, format!("was measured on another {role} than {}", entry.before.display())));
            }
        }
        Ok(measures)
    };
    let after = read_like_first(&entry.after)?;
    let nokd = entry.nokd.as_deref().map(&mut read_like_first).transpose()?;
    if let Teacher::Public(selected) = &entry.teacher {
        if first.input_hash("teacher")? != io::file_hash(selected)? {
            return Err(bad_input(&entry.before, format!("was not measured against {}", selected.display())));
        }
    }
    Ok(Measures { before, after, nokd })
}

/// Seed of the paired bootstrap intervals (the report's bytes do not depend on anything else).
const BOOTSTRAP_SEED: u64 = 0x4B44_0000_0000_0001;

/// The row of the samples `keep` admits (those with teacher positions only).
fn row_of(measures: &Measures, keep: impl Fn(&str) -> bool) -> KdRow {
    let kept = |all: &[SampleMeasure]| -> Vec<SampleMeasure> {
        all.iter().filter(|m| m.kd_positions > 0 && keep(&m.id)).cloned().collect()
    };
    let (before, after) = (kept(&measures.before), kept(&measures.after));
    let nokd = measures.nokd.as_deref().map(kept);
    let pooled_after = kd_measure::pooled(&after);
    let paired = nokd.as_ref().filter(|n| !n.is_empty() && n.len() == after.len()).map(|nokd| {
        let kl = |m: &[SampleMeasure]| m.iter().map(|s| s.kl().unwrap_or(0.0)).collect::<Vec<f64>>();
        stats::paired_difference(&kl(&after), &kl(nokd), stats::RESAMPLES, BOOTSTRAP_SEED)
    });
    KdRow {
        samples: after.len() as u32,
        entropy: pooled_after.entropy(),
        teacher_gold: pooled_after.gold_probability(),
        kl_before: kd_measure::pooled(&before).kl(),
        kl_after: pooled_after.kl(),
        kl_nokd: nokd.as_ref().and_then(|n| kd_measure::pooled(n).kl()),
        after_minus_nokd: paired,
        ..KdRow::default()
    }
}

/// The public-set rows of one receiver: one per sender it took targets from, then all pooled
/// where there were several.
fn public_rows(entry: &KdEntry, selected: &Path) -> Result<Vec<KdRow>> {
    let measures = read_entry_measures(entry)?;
    let table = io::read_parquet(selected, SELECTED_FORMAT)?;
    let (ids, parties) = (table.strings("id")?, table.strings("party")?);
    let (sender_loss, receiver_loss) =
        (table.values::<Float64Type>("sender_loss")?, table.values::<Float64Type>("receiver_loss")?);
    let public_samples = measures.after.len();
    let mut by_sender: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    (0..ids.len()).for_each(|i| by_sender.entry(parties[i].as_str()).or_default().push(i));
    let sender_of: HashMap<&str, &str> =
        ids.iter().map(String::as_str).zip(parties.iter().map(String::as_str)).collect();
    let mean = |rows: &[usize], values: &[f64]| rows.iter().map(|&i| values[i]).sum::<f64>() / rows.len() as f64;
    let mut rows = Vec::new();
    for (sender, chosen) in &by_sender {
        rows.push(KdRow {
            teacher: sender.to_string(),
            won: Some(chosen.len() as f64 / public_samples.max(1) as f64),
            sender_loss: Some(mean(chosen, &sender_loss)),
            receiver_loss: Some(mean(chosen, &receiver_loss)),
            ..row_of(&measures, |id| sender_of.get(id) == Some(sender))
        });
    }
    if by_sender.len() == 1 {
        return Ok(rows);
    }
    let every: Vec<usize> = (0..ids.len()).collect();
    rows.push(KdRow {
        teacher: ALL_SENDERS.into(),
        won: Some(ids.len() as f64 / public_samples.max(1) as f64),
        sender_loss: (!every.is_empty()).then(|| mean(&every, &sender_loss)),
        receiver_loss: (!every.is_empty()).then(|| mean(&every, &receiver_loss)),
        ..row_of(&measures, |_| true)
    });
    Ok(rows)
}

fn entry_rows(entry: &KdEntry) -> Result<Vec<KdRow>> {
    let rows = match &entry.teacher {
        Teacher::Public(selected) => public_rows(entry, selected)?,
        Teacher::HeldOut(sender) => {
            vec![KdRow { teacher: sender.clone(), ..row_of(&read_entry_measures(entry)?, |_| true) }]
        }
    };
    let set = if matches!(entry.teacher, Teacher::Public(_)) { "public" } else { "held-out" };
    Ok(rows.into_iter().map(|row| KdRow { round: entry.round, party: entry.party.clone(), set, ..row }).collect())
}

fn kd_batch(rows: &[KdRow]) -> Result<RecordBatch> {
    let optional = |name: &str, value: &dyn Fn(&KdRow) -> Option<f64>| -> (Field, ArrayRef) {
        (Field::new(name, DataType::Float64, true), Arc::new(rows.iter().map(value).collect::<Float64Array>()))
    };
    let strings = |name: &str, value: fn(&KdRow) -> &str| -> (Field, ArrayRef) {
        (Field::new(name, DataType::Utf8, false), Arc::new(StringArray::from_iter_values(rows.iter().map(value))))
    };
    let count = |name: &str, value: fn(&KdRow) -> u32| -> (Field, ArrayRef) {
        (Field::new(name, DataType::UInt32, false), Arc::new(UInt32Array::from_iter_values(rows.iter().map(value))))
    };
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = [
        count("round", |r| r.round),
        strings("party", |r| &r.party),
        strings("set", |r| r.set),
        strings("teacher", |r| &r.teacher),
        count("samples", |r| r.samples),
        optional("won", &|r| r.won),
        optional("sender_loss", &|r| r.sender_loss),
        optional("receiver_loss", &|r| r.receiver_loss),
        optional("entropy", &|r| r.entropy),
        optional("teacher_gold", &|r| r.teacher_gold),
        optional("kl_before", &|r| r.kl_before),
        optional("kl_after", &|r| r.kl_after),
        optional("kl_nokd", &|r| r.kl_nokd),
        optional("after_minus_nokd", &|r| r.after_minus_nokd.map(|e| e.mean)),
        optional("after_minus_nokd_low", &|r| r.after_minus_nokd.map(|e| e.low)),
        optional("after_minus_nokd_high", &|r| r.after_minus_nokd.map(|e| e.high)),
    ]
    .into_iter()
    .unzip();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn markdown(rows: &[KdRow]) -> String {
    let mut text = String::from(
        "| round | party | set | teacher | n | won | loss sender / receiver (nats/byte) | H(q) | q(gold) | KL before → after | KL noKD | after − noKD [95% CI] |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let losses = match (r.sender_loss, r.receiver_loss) {
            (Some(s), Some(l)) => format!("{s:.3} / {l:.3}"),
            _ => "–".into(),
        };
        let paired =
            r.after_minus_nokd.map_or("–".into(), |e| format!("{:+.3} [{:+.3}, {:+.3}]", e.mean, e.low, e.high));
        text += &format!(
            "| {} | {} | {} | {} | {} | {} | {losses} | {} | {} | {} → {} | {} | {paired} |\n",
            r.round,
            r.party,
            r.set,
            r.teacher,
            r.samples,
            r.won.map_or("–".into(), |w| format!("{:.1}%", 100.0 * w)),
            cell(r.entropy, 3),
            cell(r.teacher_gold, 3),
            cell(r.kl_before, 3),
            cell(r.kl_after, 3),
            cell(r.kl_nokd, 3),
        );
    }
    text += "\nKL = KD − H(q), nats per position: the part of the KD loss that training can remove. \
             public: against the party's selected targets (per sender, then all); held-out: against the \
             sender's knowledge of held-out samples. won: share of the public samples the sender won in \
             DualMinCE. noKD: the adapter of the same round without KD (FedMKT-noKD, FedCoLLM-noKD) against the same teacher; \
             after − noKD: mean over samples of the per-sample KL difference, paired bootstrap interval.\n";
    text
}

/// `report kd`: the KD table of every entry, in order, as Parquet and Markdown.
pub fn kd(public: &[KdEntry], held_out: &[KdEntry], out: &Path, markdown_path: &Path) -> Result<()> {
    let entries: Vec<&KdEntry> = public.iter().chain(held_out).collect();
    let key = |e: &&KdEntry| match &e.teacher {
        Teacher::Public(_) => format!("{},{},public", e.round, e.party),
        Teacher::HeldOut(sender) => format!("{},{},held-out {sender}", e.round, e.party),
    };
    crate::cli::refuse_repeated("--public/--held-out", &entries, key)?;
    let inputs: Vec<&Path> = entries.iter().flat_map(|e| e.files()).collect();
    claim_report(out, markdown_path, KD_REPORT_FORMAT, &inputs)?;
    let mut rows = Vec::new();
    for entry in &entries {
        rows.extend(entry_rows(entry)?);
    }
    rows.sort_by(|a, b| (a.round, &a.party, a.set != "public").cmp(&(b.round, &b.party, b.set != "public")));
    let mut provenance = Provenance::new(KD_REPORT_FORMAT, 1, "report").extra("seed", BOOTSTRAP_SEED);
    for (i, path) in inputs.iter().enumerate() {
        provenance = provenance.input(&format!("file{}", i + 1), io::file_hash(path)?);
    }
    write_report(out, markdown_path, kd_batch(&rows)?, &provenance, &markdown(&rows))?;
    eprintln!("report kd: {} rows -> {}", rows.len(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_malformed_ones_are_refused() {
        let e = KdEntry::parse("2,client-1,sel.parquet,b.parquet,a.parquet", false).unwrap();
        assert_eq!((e.round, e.party.as_str(), e.nokd), (2, "client-1", None));
        assert_eq!(e.teacher, Teacher::Public("sel.parquet".into()));
        let h = KdEntry::parse("1,server,client-2,b,a,n", true).unwrap();
        assert_eq!((h.teacher, h.nokd), (Teacher::HeldOut("client-2".into()), Some(PathBuf::from("n"))));
        let bad = KdEntry::parse("x,server,client-2,b,a", true).unwrap_err().to_string();
        assert!(bad.contains("--held-out 'x,server,client-2,b,a'") && bad.contains("SENDER"), "{bad}");
        assert!(KdEntry::parse("1,server,s", false).is_err());
    }
}
