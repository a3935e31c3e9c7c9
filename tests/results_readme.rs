//! results/README.md (and the README's headline table) quote the committed cells of the grid.
//! Every such table follows a line
//! `<!-- acc: <setting>/<task> -->` (accuracy in the paper's layout), `<!-- paired:
//! <setting>/<task> -->` (paired comparisons), `<!-- curve: teacher-curve/<task> -->` (the
//! teacher-advantage curve) or `<!-- comms: <setting>/<task>/seed-<s> -->` (a seed's bytes per
//! round and party), and each of its numbers must be the one the cell's committed Parquet file
//! holds (report.parquet, paired.parquet, curve.parquet, comms-round-N.parquet), to the digits
//! shown.
use std::collections::BTreeMap;
use std::path::Path;

use fedmkt::io::{read_parquet, ParquetTable};
use fedmkt_tests::root;

/// The tables of `text` after each `<!-- KIND: CELL -->` line: (kind, cell, rows of cells),
/// header first, the `|---|` line left out.
fn quoted_tables(text: &str) -> Vec<(String, String, Vec<Vec<String>>)> {
    let mut tables = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(marker) = line.trim().strip_prefix("<!-- ").and_then(|m| m.strip_suffix(" -->")) else { continue };
        let Some((kind, cell)) = marker.split_once(": ") else { continue };
        let mut rows = Vec::new();
        while let Some(row) =
            lines.next_if(|l| l.trim_start().starts_with('|') || l.trim().is_empty() && rows.is_empty())
        {
            if row.trim().is_empty() || row.contains("|---") {
                continue;
            }
            rows.push(row.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect());
        }
        tables.push((kind.to_string(), cell.to_string(), rows));
    }
    tables
}

fn table(cell: &str, file: &str, format: &str) -> ParquetTable {
    read_parquet(&root().join("results").join(cell).join(file), format).unwrap()
}

fn label(method: &str, round: Option<u32>) -> String {
    round.map_or(method.to_string(), |r| format!("{method} (round {r})"))
}

/// (row label, party) → the accuracy cell: "acc [low, high] / acc_norm" in %, with "± sd"
/// after acc when seeds are pooled.
fn accuracy_cells(cell: &str) -> BTreeMap<(String, String), String> {
    let t = table(cell, "report.parquet", "results");
    let f = |c: &str| t.values::<arrow_array::types::Float64Type>(c).unwrap();
    let (acc, sd, low, high, norm) = (f("acc"), f("acc_sd"), f("acc_low"), f("acc_high"), f("acc_norm"));
    let seeds = t.values::<arrow_array::types::UInt32Type>("seeds").unwrap();
    let rounds = t.optional_values::<arrow_array::types::UInt32Type>("round").unwrap();
    let (methods, parties) = (t.strings("method").unwrap(), t.strings("party").unwrap());
    (0..t.num_rows())
        .map(|i| {
            let spread = if seeds[i] > 1 { format!(" ± {:.1}", 100.0 * sd[i]) } else { String::new() };
            let text = format!(
                "{:.1}{spread} [{:.1}, {:.1}] / {:.1}",
                100.0 * acc[i],
                100.0 * low[i],
                100.0 * high[i],
                100.0 * norm[i]
            );
            ((label(&methods[i], rounds[i]), parties[i].clone()), text)
        })
        .collect()
}

/// (party, "METHOD vs AGAINST") → [n, Δ acc (pp) with interval, McNemar p, Δ gold log-lik/byte].
fn paired_cells(cell: &str) -> BTreeMap<(String, String), [String; 4]> {
    let t = table(cell, "paired.parquet", "paired");
    let f = |c: &str| t.values::<arrow_array::types::Float64Type>(c).unwrap();
    let round = |c: &str| t.optional_values::<arrow_array::types::UInt32Type>(c).unwrap();
    let (methods, against, parties) =
        (t.strings("method").unwrap(), t.strings("against_method").unwrap(), t.strings("party").unwrap());
    let (rounds, against_rounds, n) =
        (round("round"), round("against_round"), t.values::<arrow_array::types::UInt64Type>("n").unwrap());
    let (d, dl, dh, p) = (f("acc_diff"), f("acc_diff_low"), f("acc_diff_high"), f("mcnemar_p"));
    let (g, gl, gh) =
        (f("gold_loglik_per_byte_diff"), f("gold_loglik_per_byte_diff_low"), f("gold_loglik_per_byte_diff_high"));
    (0..t.num_rows())
        .map(|i| {
            let comparison = format!("{} vs {}", label(&methods[i], rounds[i]), label(&against[i], against_rounds[i]));
            let numbers = [
                n[i].to_string(),
                format!("{:+.1} [{:+.1}, {:+.1}]", 100.0 * d[i], 100.0 * dl[i], 100.0 * dh[i]),
                format!("{:.3}", p[i]),
                format!("{:+.4} [{:+.4}, {:+.4}]", g[i], gl[i], gh[i]),
            ];
            ((parties[i].clone(), comparison), numbers)
        })
        .collect()
}

fn check_accuracy_table(cell: &str, rows: &[Vec<String>]) -> usize {
    let expected = accuracy_cells(cell);
    let parties: Vec<&str> = rows[0][1..].iter().map(|h| h.split(" (").next().unwrap()).collect();
    let mut checked = 0;
    for row in &rows[1..] {
        for (party, quoted) in parties.iter().zip(&row[1..]) {
            match expected.get(&(row[0].clone(), party.to_string())) {
                Some(value) => assert_eq!(quoted, value, "{cell}: {} for {party}", row[0]),
                None => assert_eq!(quoted, "–", "{cell}: {} for {party} has no row in report.parquet", row[0]),
            }
            checked += 1;
        }
    }
    checked
}

/// Columns: party | comparison | n | Δ acc | McNemar p | Δ gold log-lik/byte | (verdict).
fn check_paired_table(cell: &str, rows: &[Vec<String>]) -> usize {
    let expected = paired_cells(cell);
    for row in &rows[1..] {
        let numbers = expected.get(&(row[0].clone(), row[1].clone()));
        let numbers = numbers.unwrap_or_else(|| panic!("{cell}: no paired row for {} {}", row[0], row[1]));
        assert_eq!(&row[2..6], numbers.as_slice(), "{cell}: {} {}", row[0], row[1]);
    }
    rows.len() - 1
}

/// The curve's rows as teacher_curve.py's curve.md prints them, by (teacher, parts, labels, λ).
fn curve_rows(cell: &str) -> BTreeMap<[String; 4], Vec<String>> {
    let t = table(cell, "curve.parquet", "teacher-curve");
    let f = |c: &str| t.values::<arrow_array::types::Float64Type>(c).unwrap();
    let (models, labels, verdicts) =
        (t.strings("teacher_model").unwrap(), t.strings("public_labels").unwrap(), t.strings("verdict").unwrap());
    let shards = t.values::<arrow_array::types::Int64Type>("teacher_shards").unwrap();
    let (lambda, teacher, student, advantage) =
        (f("lambda"), f("teacher_acc"), f("student_nokd_acc"), f("advantage_acc"));
    let (d, dl, dh, p) = (f("kd_acc_diff"), f("kd_acc_diff_low"), f("kd_acc_diff_high"), f("mcnemar_p"));
    let (g, gl, gh) = (
        f("kd_gold_loglik_per_byte_diff"),
        f("kd_gold_loglik_per_byte_diff_low"),
        f("kd_gold_loglik_per_byte_diff_high"),
    );
    (0..t.num_rows())
        .map(|i| {
            let key = [models[i].clone(), shards[i].to_string(), labels[i].clone(), lambda[i].to_string()];
            let numbers = vec![
                format!("{:.1}", 100.0 * teacher[i]),
                format!("{:.1}", 100.0 * student[i]),
                format!("{:+.1}", 100.0 * advantage[i]),
                format!("{:+.1} [{:+.1}, {:+.1}]", 100.0 * d[i], 100.0 * dl[i], 100.0 * dh[i]),
                format!("{:.3}", p[i]),
                format!("{:+.4} [{:+.4}, {:+.4}]", g[i], gl[i], gh[i]),
                verdicts[i].clone(),
            ];
            (key, numbers)
        })
        .collect()
}

/// Columns: teacher | parts | labels | λ | teacher acc | student noKD acc | advantage | KD Δ acc
/// | McNemar p | KD Δ gold log-lik/byte | verdict.
fn check_curve_table(cell: &str, rows: &[Vec<String>]) -> usize {
    let expected = curve_rows(cell);
    for row in &rows[1..] {
        let key: [String; 4] = row[..4].to_vec().try_into().unwrap();
        let numbers = expected.get(&key).unwrap_or_else(|| panic!("{cell}: no point {key:?} in curve.parquet"));
        assert_eq!(&row[4..], numbers.as_slice(), "{cell}: {key:?}");
    }
    rows.len() - 1
}

/// Bytes as the comms tables quote them: B, KiB or MiB, one decimal.
fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    match bytes as f64 {
        b if b >= KIB * KIB => format!("{:.1} MiB", b / (KIB * KIB)),
        b if b >= KIB => format!("{:.1} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

/// (round, party) → [sent, received, LoRA adapter, FedMKT's knowledge sets sent / received],
/// from a published seed's comms-round-N.parquet files.
fn comms_rows(seed: &str) -> BTreeMap<(String, String), [String; 4]> {
    let folder = root().join("results").join(seed);
    let mut rows = BTreeMap::new();
    for entry in std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("comms-round-") && name.ends_with(".parquet")) {
            continue;
        }
        let t = read_parquet(&entry, "comms").unwrap();
        let bytes = |c: &str| t.optional_values::<arrow_array::types::UInt64Type>(c).unwrap();
        let (sent, received, adapter) = (bytes("sent_bytes"), bytes("received_bytes"), bytes("adapter_bytes"));
        let (fedmkt_sent, fedmkt_received) = (bytes("fedmkt_sent_bytes"), bytes("fedmkt_received_bytes"));
        let rounds = t.values::<arrow_array::types::UInt32Type>("round").unwrap();
        let parties = t.strings("party").unwrap();
        for i in 0..t.num_rows() {
            let fedmkt = match (fedmkt_sent[i], fedmkt_received[i]) {
                (Some(s), Some(r)) => format!("{} / {}", size(s), size(r)),
                _ => "–".to_string(),
            };
            let numbers =
                [size(sent[i].unwrap()), size(received[i].unwrap()), adapter[i].map_or("–".into(), size), fedmkt];
            rows.insert((rounds[i].to_string(), parties[i].clone()), numbers);
        }
    }
    rows
}

/// Columns: round | party | sent | received | LoRA adapter | FedMKT's knowledge sets sent / received.
fn check_comms_table(seed: &str, rows: &[Vec<String>]) -> usize {
    let expected = comms_rows(seed);
    for row in &rows[1..] {
        let key = (row[0].clone(), row[1].clone());
        let numbers = expected.get(&key).unwrap_or_else(|| panic!("{seed}: no comms row for {key:?}"));
        assert_eq!(&row[2..6], numbers.as_slice(), "{seed}: {key:?}");
    }
    rows.len() - 1
}

#[test]
fn every_number_in_the_results_readme_is_its_cells() {
    let mut checked = 0;
    for readme in ["results/README.md", "README.md"] {
        checked += check_quoted_tables(&std::fs::read_to_string(root().join(readme)).unwrap());
    }
    assert!(checked > 0, "results/README.md quotes no numbers");
}

fn check_quoted_tables(readme: &str) -> usize {
    let mut checked = 0;
    for (kind, cell, rows) in quoted_tables(readme) {
        assert!(Path::new(&root().join("results").join(&cell)).is_dir(), "results/{cell}: no such cell");
        checked += match kind.as_str() {
            "acc" => check_accuracy_table(&cell, &rows),
            "paired" => check_paired_table(&cell, &rows),
            "curve" => check_curve_table(&cell, &rows),
            "comms" => check_comms_table(&cell, &rows),
            other => panic!("unknown table kind '{other}'"),
        };
    }
    checked
}

#[test]
fn a_quoted_table_is_found_after_its_marker() {
    let text = "intro\n<!-- acc: s/t -->\n| method | server (m) |\n|---|---|\n| Zero-Shot | 1.0 |\n\nafter\n";
    let tables = quoted_tables(text);
    assert_eq!(tables.len(), 1);
    assert_eq!(
        tables[0].2,
        vec![vec!["method".to_string(), "server (m)".into()], vec!["Zero-Shot".into(), "1.0".into()]]
    );
}
