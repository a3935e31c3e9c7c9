//! Communication: what each party sent and received in a round (`report comms`), and beside it
//! what a federation's nodes moved on the wire (`report wire`).
//!
//! `report comms` counts the files of the round layout that cross between parties (the
//! paper's accounting: a client's knowledge set up, the server's down) and sets them beside
//! what FedAvg would send instead and the paper's N·S·K estimate. On a federation the
//! bytes that really flow are more: TLS records, HTTP and Flower's framing and polling, the
//! evaluations a client reports, the setup hashes. `report wire` joins the relay's counts
//! (`make federation`'s wire.json) to the comms tables, row by row, so the two can be read
//! side by side.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::report::results::{claim_report, write_report};
use crate::tokens;

pub const COMMS_FORMAT: &str = "comms";
pub const WIRE_FORMAT: &str = "wire";

/// What one party sent and received in one round, and what it would have cost otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct CommsEntry {
    pub round: u32,
    pub party: String,
    /// The files it sent and received (their sizes add up): a knowledge set, or FedCoLLM's
    /// masked adapter with the protocol's messages.
    pub sent: Vec<PathBuf>,
    pub received: Vec<PathBuf>,
    /// The party's LoRA adapter weights: what FedAvg would send each way instead (None on a
    /// federation's server, which never holds a client's adapter).
    pub adapter: Option<PathBuf>,
    /// The party's token file of the public set (N and S of the paper's estimate).
    pub tokens: PathBuf,
    /// In FedCoLLM's table, FedMKT's knowledge sets for the same party and public set: what it
    /// would send (its model's knowledge set) and receive (the server's) instead.
    pub fedmkt: Option<(PathBuf, PathBuf)>,
}

impl std::str::FromStr for CommsEntry {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<CommsEntry> {
        let malformed = || {
            bad_usage(format!(
                "--entry '{text}': expected ROUND,PARTY,SENT,RECEIVED,ADAPTER,TOKENS[,FEDMKT_SENT,FEDMKT_RECEIVED] (SENT and RECEIVED: files joined by '+', or '-')"
            ))
        };
        let fields: Vec<&str> = text.split(',').collect();
        let (fields, fedmkt) = match fields[..] {
            [.., sent, received] if fields.len() == 8 => (&fields[..6], Some((sent.into(), received.into()))),
            _ => (&fields[..], None),
        };
        let [round, party, sent, received, adapter, tokens] = fields[..] else { return Err(malformed()) };
        let optional = |f: &str| (f != "-").then(|| PathBuf::from(f));
        let files = |f: &str| if f == "-" { Vec::new() } else { f.split('+').map(PathBuf::from).collect() };
        Ok(CommsEntry {
            round: round.parse().map_err(|_| malformed())?,
            party: party.into(),
            sent: files(sent),
            received: files(received),
            adapter: optional(adapter),
            tokens: tokens.into(),
            fedmkt,
        })
    }
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).map_err(|e| bad_input(path, format!("cannot read: {e}")))?.len())
}

/// The paper's estimate of one knowledge transfer, N·S·K entries: every position of every
/// public sample with K (id u32, logit f16) pairs, 6 bytes each.
pub fn paper_estimate_bytes(samples: u64, mean_tokens: f64, top_k: u64) -> u64 {
    (samples as f64 * mean_tokens * top_k as f64 * 6.0).round() as u64
}

/// One row of the comms table.
struct CommsRow {
    sent: u64,
    received: u64,
    adapter: Option<u64>,
    samples: u64,
    estimate: u64,
    mean_tokens: f64,
    /// FedMKT's knowledge sets in their place (FedCoLLM's rows).
    fedmkt: Option<(u64, u64)>,
}

fn comms_row(entry: &CommsEntry, top_k: u64) -> Result<CommsRow> {
    let (samples, _) = tokens::read_tokens(&entry.tokens)?;
    let mean_tokens = samples.iter().map(|t| t.input_ids.len()).sum::<usize>() as f64 / samples.len().max(1) as f64;
    let size = |files: &[PathBuf]| files.iter().map(|f| file_size(f)).sum::<Result<u64>>();
    Ok(CommsRow {
        sent: size(&entry.sent)?,
        received: size(&entry.received)?,
        adapter: entry.adapter.as_deref().map(file_size).transpose()?,
        samples: samples.len() as u64,
        estimate: paper_estimate_bytes(samples.len() as u64, mean_tokens, top_k),
        mean_tokens,
        fedmkt: entry
            .fedmkt
            .as_ref()
            .map(|(s, r)| Ok::<_, anyhow::Error>((file_size(s)?, file_size(r)?)))
            .transpose()?,
    })
}

fn round_and_party(rounds: impl Iterator<Item = u32>, parties: Vec<&str>) -> Vec<ArrayRef> {
    vec![Arc::new(UInt32Array::from_iter_values(rounds)), Arc::new(StringArray::from_iter_values(parties))]
}

fn byte_column(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::UInt64, nullable)
}

/// `report comms`: one row per entry with measured and estimated bytes.
pub fn comms(entries: &[CommsEntry], top_k: u64, out: &Path, markdown: &Path) -> Result<()> {
    crate::cli::refuse_repeated("--entry", entries, |e| format!("{},{}", e.round, e.party))?;
    if top_k == 0 {
        return Err(bad_usage("--top-k 0: the knowledge sets keep at least one logit per position"));
    }
    let mut inputs: Vec<&Path> = Vec::new();
    for e in entries {
        inputs.extend(e.sent.iter().chain(&e.received).chain(&e.adapter).chain([&e.tokens]).map(PathBuf::as_path));
        inputs.extend(e.fedmkt.iter().flat_map(|(s, r)| [s.as_path(), r.as_path()]));
    }
    claim_report(out, markdown, COMMS_FORMAT, &inputs)?;
    let rows = entries.iter().map(|e| comms_row(e, top_k)).collect::<Result<Vec<_>>>()?;
    let schema = Schema::new(vec![
        Field::new("round", DataType::UInt32, false),
        Field::new("party", DataType::Utf8, false),
        byte_column("sent_bytes", false),
        byte_column("received_bytes", false),
        byte_column("adapter_bytes", true),
        byte_column("public_samples", false),
        byte_column("paper_estimate_bytes", false),
        Field::new("mean_tokens", DataType::Float64, false),
        byte_column("fedmkt_sent_bytes", true),
        byte_column("fedmkt_received_bytes", true),
    ]);
    let mut arrays =
        round_and_party(entries.iter().map(|e| e.round), entries.iter().map(|e| e.party.as_str()).collect());
    let column = |f: fn(&CommsRow) -> u64| Arc::new(UInt64Array::from_iter_values(rows.iter().map(f))) as ArrayRef;
    arrays.extend([column(|r| r.sent), column(|r| r.received)]);
    arrays.push(Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.adapter))));
    arrays.extend([column(|r| r.samples), column(|r| r.estimate)]);
    arrays.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.mean_tokens))));
    arrays.push(Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.fedmkt.map(|f| f.0)))));
    arrays.push(Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.fedmkt.map(|f| f.1)))));
    let batch = RecordBatch::try_new(Arc::new(schema), arrays)?;
    let provenance = Provenance::new(COMMS_FORMAT, 1, "report").extra("top_k", top_k);
    let beside_fedmkt = rows.iter().any(|r| r.fedmkt.is_some());
    let mut md = String::from("| round | party | sent | received | LoRA adapter | paper's N·S·K |");
    md.push_str(if beside_fedmkt {
        " FedMKT sends / receives |\n|---|---|---|---|---|---|---|\n"
    } else {
        "\n|---|---|---|---|---|---|\n"
    });
    for (e, r) in entries.iter().zip(&rows) {
        let adapter = r.adapter.map_or("unknown here".to_string(), human);
        let mut cells = vec![human(r.sent), human(r.received), adapter, human(r.estimate)];
        if beside_fedmkt {
            cells.push(r.fedmkt.map_or("–".to_string(), |(s, r)| format!("{} / {}", human(s), human(r))));
        }
        md.push_str(&format!("| {} | {} | {} |\n", e.round, e.party, cells.join(" | ")));
    }
    write_report(out, markdown, batch, &provenance, &md)
}

/// One node's bytes on the wire in one round, as `make federation`'s wire.json lists them.
#[derive(Debug, serde::Deserialize)]
struct WireRow {
    round: u32,
    party: String,
    sent: u64,
    received: u64,
}

fn read_wire(path: &Path) -> Result<Vec<WireRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| bad_input(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| bad_input(path, format!("not a list of {{round, party, sent, received}} ({e})")))
}

/// (round, party) → (sent, received) of the comms tables.
fn read_comms(paths: &[PathBuf]) -> Result<std::collections::BTreeMap<(u32, String), (u64, u64)>> {
    let mut files = std::collections::BTreeMap::new();
    for path in paths {
        let table = io::read_parquet(path, COMMS_FORMAT)?;
        let (rounds, parties) = (table.values::<arrow_array::types::UInt32Type>("round")?, table.strings("party")?);
        let sent = table.values::<arrow_array::types::UInt64Type>("sent_bytes")?;
        let received = table.values::<arrow_array::types::UInt64Type>("received_bytes")?;
        for (i, key) in rounds.into_iter().zip(parties).enumerate() {
            if files.insert(key.clone(), (sent[i], received[i])).is_some() {
                return Err(bad_input(
                    path,
                    format!("round {} party {} appears twice in the comms tables", key.0, key.1),
                ));
            }
        }
    }
    Ok(files)
}

/// `report wire`: each node's bytes on the wire beside the files comms counts, per round.
/// Every wire row is kept; a node left out of a round has no comms row (null files).
pub fn wire(wire_json: &Path, comms_tables: &[PathBuf], out: &Path, markdown: &Path) -> Result<()> {
    let inputs: Vec<&Path> = comms_tables.iter().map(PathBuf::as_path).chain([wire_json]).collect();
    claim_report(out, markdown, WIRE_FORMAT, &inputs)?;
    let (wire, files) = (read_wire(wire_json)?, read_comms(comms_tables)?);
    let file_bytes: Vec<Option<(u64, u64)>> =
        wire.iter().map(|w| files.get(&(w.round, w.party.clone())).copied()).collect();
    let schema = Schema::new(vec![
        Field::new("round", DataType::UInt32, false),
        Field::new("party", DataType::Utf8, false),
        byte_column("sent_bytes", true),
        byte_column("wire_sent_bytes", false),
        byte_column("received_bytes", true),
        byte_column("wire_received_bytes", false),
    ]);
    let mut arrays = round_and_party(wire.iter().map(|w| w.round), wire.iter().map(|w| w.party.as_str()).collect());
    arrays.extend([
        Arc::new(UInt64Array::from_iter(file_bytes.iter().map(|f| f.map(|f| f.0)))) as ArrayRef,
        Arc::new(UInt64Array::from_iter_values(wire.iter().map(|w| w.sent))),
        Arc::new(UInt64Array::from_iter(file_bytes.iter().map(|f| f.map(|f| f.1)))),
        Arc::new(UInt64Array::from_iter_values(wire.iter().map(|w| w.received))),
    ]);
    let batch = RecordBatch::try_new(Arc::new(schema), arrays)?;
    let mut md = String::from(
        "| round | party | sent: files (comms) | sent: on the wire | received: files (comms) | received: on the wire |\n\
         |---|---|---|---|---|---|\n",
    );
    for (w, f) in wire.iter().zip(&file_bytes) {
        let files = |pick: fn(&(u64, u64)) -> u64| f.as_ref().map_or("absent".to_string(), |f| human(pick(f)));
        let cells = [files(|f| f.0), human(w.sent), files(|f| f.1), human(w.received)];
        md.push_str(&format!("| {} | {} | {} |\n", w.round, w.party, cells.join(" | ")));
    }
    write_report(out, markdown, batch, &Provenance::new(WIRE_FORMAT, 1, "report"), &md)
}

/// Bytes in KiB/MiB with one decimal.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_an_unknown_adapter_is_a_dash() {
        let c: CommsEntry = "1,client-2,-,k.parquet,-,t.parquet".parse().unwrap();
        assert_eq!((c.sent, c.received, c.adapter), (vec![], vec![PathBuf::from("k.parquet")], None));
        assert!("1,client-2,-,k.parquet,t.parquet".parse::<CommsEntry>().is_err());
        let several: CommsEntry = "1,client-1,m.parquet+p.json,-,-,t.parquet".parse().unwrap();
        assert_eq!(several.sent, vec![PathBuf::from("m.parquet"), PathBuf::from("p.json")]);
    }

    #[test]
    fn the_paper_estimate_counts_six_bytes_per_entry() {
        assert_eq!(paper_estimate_bytes(100, 50.5, 16), 100 * 505 * 16 * 6 / 10);
    }
}
