//! `make PARTY=server` / `PARTY=client-k`: each party of a FedMKT round on its own node, with
//! only its own data, exchanging only the round's files. Each node here is a folder that sees
//! the repository (Makefile, mk, pipelines, tools, test data, built binaries) through symlinks and
//! has its own `runs/`, as a machine with a checkout would. The files travel by a copy in the
//! test, then over Flower (`make federation`: TLS SuperLink and SuperNodes on loopback).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fedmkt_tests::*;

const ROUNDS: u32 = 2;
const CLIENTS: [&str; 2] = ["client-1", "client-2"];

/// A node: a folder with the repository's shared parts linked in and its own `runs/`.
fn node(dir: &Path, name: &str) -> PathBuf {
    let node = dir.join(name);
    std::fs::create_dir_all(&node).unwrap();
    for shared in ["Makefile", "mk", "pipelines", "tools", "testdata", "target"] {
        std::os::unix::fs::symlink(root().join(shared), node.join(shared)).unwrap();
    }
    node
}

/// `make` on a node with the tiny pipeline (tools already built), failing the test on failure.
fn make_on(node: &Path, party: Option<&str>, targets: &[String]) -> Output {
    let output = Command::new("make")
        .current_dir(node)
        .args(["PIPELINE=pipelines/tiny.mk", "CARGO=true"])
        .arg(format!("ROUND={ROUNDS}"))
        .args(party.map(|p| format!("PARTY={p}")))
        .args(targets)
        .output()
        .expect("make runs");
    assert_success(&output);
    output
}

/// `runs/tiny/<rel>` of a node.
fn run_file(node: &Path, rel: &str) -> PathBuf {
    node.join("runs/tiny").join(rel)
}

/// A file travels from one node to another, to the same place in the round layout.
fn send(from: &Path, to: &Path, rel: &str) {
    let dest = run_file(to, rel);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(run_file(from, rel), dest).unwrap();
}

/// `make federation` of the repository into `runs`, failing the test on failure.
fn make_federation(runs: &Path, settings: &[&str]) {
    let output = Command::new("make")
        .current_dir(root())
        .args(["federation", "CARGO=true"])
        .arg(format!("RUNS={}", runs.display()))
        .args(settings)
        .output()
        .expect("make runs");
    assert_success(&output);
}

/// Every round file a party makes is byte-identical to the single machine's.
fn assert_same_round_files(server: &Path, clients: &[PathBuf], single: &Path) {
    let same = |node: &Path, rel: &str| {
        let (ours, reference) = (run_file(node, rel), run_file(single, rel));
        assert!(std::fs::read(&ours).unwrap() == std::fs::read(&reference).unwrap(), "{rel} differs");
    };
    for rel in [format!("report-{ROUNDS}.parquet"), format!("report-{ROUNDS}.md")] {
        same(server, &rel);
    }
    for n in 1..=ROUNDS {
        same(server, &format!("round-{n}/server/adapter/adapter_model.safetensors"));
        same(server, &format!("round-{n}/server/selected.parquet"));
        for (client, name) in clients.iter().zip(CLIENTS) {
            same(client, &format!("round-{n}/{name}/adapter/adapter_model.safetensors"));
            same(client, &format!("round-{n}/{name}/knowledge.parquet"));
            same(client, &format!("round-{n}/{name}/selected.parquet"));
        }
    }
}

/// Nothing private reached the server: no shard, no client adapter.
fn assert_nothing_private_on(server: &Path) {
    let on_server: Vec<PathBuf> = files_below(&server.join("runs"));
    for name in CLIENTS {
        let private = |p: &&PathBuf| {
            let p = p.to_string_lossy();
            p.ends_with(&format!("data/arc-easy/{name}.parquet"))
                || p.contains(&format!("/{name}/private"))
                || p.contains(&format!("/{name}/adapter"))
                || p.ends_with(&format!("tok/tiny-gemma3/{name}.parquet"))
        };
        assert!(!on_server.iter().any(|p| private(&p)), "{name}'s private files on the server: {on_server:?}");
    }
}

fn targets(rels: &[String]) -> Vec<String> {
    rels.iter().map(|r| format!("runs/tiny/{r}")).collect()
}

#[test]
fn parties_on_their_own_nodes_make_the_same_bytes_as_one_machine() {
    let dir = tempdir();
    let single = node(dir.path(), "single");
    make_on(&single, None, &["round".to_string()]);

    // Each node holds its share of the data: the server the public and eval sets, a client
    // those and its own shard.
    let (server, clients) = (node(dir.path(), "server"), CLIENTS.map(|c| node(dir.path(), c)));
    for split in ["public", "eval"] {
        for to in std::iter::once(&server).chain(&clients) {
            send(&single, to, &format!("data/arc-easy/{split}.parquet"));
        }
    }
    for (client, name) in clients.iter().zip(CLIENTS) {
        send(&single, client, &format!("data/arc-easy/{name}.parquet"));
    }

    for n in 1..=ROUNDS {
        for (client, name) in clients.iter().zip(CLIENTS) {
            let knowledge = format!("round-{n}/{name}/knowledge.parquet");
            make_on(client, Some(name), &targets(std::slice::from_ref(&knowledge)));
            send(client, &server, &knowledge);
        }
        let server_files = [format!("round-{n}/server/knowledge.parquet"), format!("round-{n}/eval/server.json")];
        make_on(&server, Some("server"), &targets(&server_files));
        for (client, name) in clients.iter().zip(CLIENTS) {
            send(&server, client, &server_files[0]);
            make_on(client, Some(name), &targets(&[format!("round-{n}/eval/{name}.json")]));
            for ext in ["json", "parquet"] {
                send(client, &server, &format!("round-{n}/eval/{name}.{ext}"));
            }
        }
    }
    make_on(&server, Some("server"), &targets(&[format!("report-{ROUNDS}.md")]));

    assert_same_round_files(&server, &clients, &single);
    assert_nothing_private_on(&server);
}

/// `make federation`: the same rounds over Flower give the same bytes, with nothing private on
/// the server's node.
#[test]
fn a_federation_over_flower_makes_the_same_bytes_as_one_machine() {
    let dir = tempdir();
    let single = node(dir.path(), "single");
    make_on(&single, None, &["round".to_string()]);
    let runs = dir.path().join("runs");
    make_federation(&runs, &["PIPELINE=pipelines/tiny.mk", &format!("ROUND={ROUNDS}")]);
    let federation = runs.join("tiny-federation");
    let clients = CLIENTS.map(|c| federation.join(c));
    assert_same_round_files(&federation.join("server"), &clients, &single);
    assert_nothing_private_on(&federation.join("server"));
    // Per client and round, the files comms counts (the server's table, the same bytes as the
    // single machine's) beside what the client's node moved on the wire, which carries more.
    let wire = wire_rows(&federation);
    for n in 1..=ROUNDS {
        let single_comms =
            fedmkt::io::read_parquet(&run_file(&single, &format!("round-{n}/comms.parquet")), "comms").unwrap();
        for (direction, column) in ["sent", "received"].iter().enumerate() {
            let files = single_comms.values::<arrow_array::types::UInt64Type>(&format!("{column}_bytes")).unwrap();
            for (k, name) in CLIENTS.iter().enumerate() {
                let (ours, on_wire) = wire[&(n, name.to_string())][direction];
                assert_eq!(ours, Some(files[k]), "round {n} {name} {column}: {wire:?}");
                assert!(on_wire > files[k], "round {n} {name} {column}: {wire:?}");
            }
        }
    }
}

/// `make federation`'s comms.parquet: (round, party) → [sent, received], each as (the files
/// comms counts, the bytes on the wire).
type WireRows = std::collections::BTreeMap<(u32, String), [(Option<u64>, u64); 2]>;

fn wire_rows(federation: &Path) -> WireRows {
    let table = fedmkt::io::read_parquet(&federation.join("comms.parquet"), "wire").unwrap();
    let files = |c: &str| table.optional_values::<arrow_array::types::UInt64Type>(&format!("{c}_bytes")).unwrap();
    let on_wire = |c: &str| table.values::<arrow_array::types::UInt64Type>(&format!("wire_{c}_bytes")).unwrap();
    let (sent, received) =
        (files("sent").into_iter().zip(on_wire("sent")), files("received").into_iter().zip(on_wire("received")));
    let keys = table
        .values::<arrow_array::types::UInt32Type>("round")
        .unwrap()
        .into_iter()
        .zip(table.strings("party").unwrap());
    keys.zip(sent.zip(received).map(|(s, r)| [s, r])).collect()
}

/// A client whose node is killed by its PID before round 2 is left out of that round: the
/// round completes with the others, federation.json names it, the report has no row for it.
#[test]
fn a_client_killed_before_round_two_is_left_out_of_it() {
    let dir = tempdir();
    let runs = dir.path().join("runs");
    let kill = "FEDERATION_KILL=client-2@round-1/eval/client-2.json";
    make_federation(&runs, &["PIPELINE=pipelines/tiny.mk", &format!("ROUND={ROUNDS}"), "FEDERATION_TIMEOUT=40", kill]);
    let server = runs.join("tiny-federation/server");
    let log = read_json(&run_file(&server, "federation.json"));
    assert_eq!(log["rounds"][0]["absent"], serde_json::json!([]), "{log}");
    assert_eq!(log["rounds"][1]["absent"], serde_json::json!(["client-2"]), "{log}");
    assert!(!run_file(&server, "round-2/server/from-client-2.parquet").exists());
    let report = fedmkt::io::read_parquet(&run_file(&server, "report-2.parquet"), "results").unwrap();
    let rows: Vec<(Option<u32>, String)> = {
        let rounds = report.optional_values::<arrow_array::types::UInt32Type>("round").unwrap();
        rounds.into_iter().zip(report.strings("party").unwrap()).collect()
    };
    assert!(rows.contains(&(Some(2), "client-1".to_string())) && rows.contains(&(Some(1), "client-2".to_string())));
    assert!(!rows.contains(&(Some(2), "client-2".to_string())), "{rows:?}");
    // Its node sent nothing counted as files in round 2: the communication table says absent.
    let wire = wire_rows(&runs.join("tiny-federation"));
    assert_eq!(wire[&(2, "client-2".to_string())][0].0, None, "{wire:?}");
    assert!(wire[&(2, "client-1".to_string())][0].0.is_some(), "{wire:?}");
}

/// FedCoLLM over Flower, three clients, threshold 2: client 3 is killed by its PID once it has
/// dealt its shares, before its masked adapter reaches the server. The round completes, and
/// the securely unmasked average is the plain average of clients 1 and 2 (≤ 1e-6).
#[test]
fn fedcollm_over_flower_survives_a_client_dropping_after_sharing() {
    let dir = tempdir();
    let runs = dir.path().join("runs");
    let kill = "FEDERATION_KILL=client-3@round-1/secagg/shares/from-3/to-3.json";
    make_federation(&runs, &["PIPELINE=pipelines/tiny-fedcollm.mk", "ROUND=1", "FEDERATION_TIMEOUT=40", kill]);
    let federation = runs.join("tiny-fedcollm-federation");
    let server = federation.join("server/runs/tiny-fedcollm");
    let log = read_json(&server.join("federation.json"));
    assert_eq!(log["rounds"][0]["absent"], serde_json::json!(["client-3"]), "{log}");
    let private = |k: u32| federation.join(format!("client-{k}/runs/tiny-fedcollm/round-1/client-{k}/private"));
    let plain = dir.path().join("plain");
    let (first, second) = (private(1), private(2));
    let args = ["average".as_ref(), "--adapters".as_ref(), first.as_os_str(), second.as_os_str()];
    assert_success(&run("aggregate", args.into_iter().chain(["--out".as_ref(), plain.as_os_str()])));
    assert_adapters_close(&server.join("round-1/server/slm"), &plain, 1e-6);
    assert!(!server.join("round-1/secagg/masked/client-3.parquet").exists());
}

/// The server cannot train a client nor cut a client's data: make has no recipe for them there.
#[test]
fn the_server_has_no_recipe_for_a_clients_files() {
    let dir = tempdir();
    let server = node(dir.path(), "server");
    for rel in [
        "round-1/client-1/private/adapter_config.json",
        "round-1/client-1/knowledge.parquet",
        "data/arc-easy/client-1.parquet",
    ] {
        let output = Command::new("make")
            .current_dir(&server)
            .args(["PIPELINE=pipelines/tiny.mk", "CARGO=true", "PARTY=server", "-n"])
            .arg(format!("runs/tiny/{rel}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let no_rule = format!("No rule to make target 'runs/tiny/{rel}'");
        assert!(!output.status.success() && stderr.contains(&no_rule), "{rel}: {stderr}");
    }
}

/// `make federation` replaces its earlier folder only while it holds nothing but what that run
/// wrote (listed in its mark as the run ended): a file a user put there stops the rerun, exit
/// 2, the folder untouched (it was removed whole).
#[test]
fn a_federation_rerun_keeps_a_file_the_user_put_in_its_folder() {
    let dir = tempdir();
    let fed = dir.path().join("fed");
    let python = |code: &str| {
        let script = format!("import sys; sys.path.insert(0, 'federation'); import run_local as r; {code}");
        Command::new("python3").current_dir(root()).args(["-c", &script]).output().unwrap()
    };
    let fed_arg = fed.display();
    let run = format!(
        "r.fresh_folder('{fed_arg}'); import os; os.makedirs('{fed_arg}/server/runs'); r.list_written('{fed_arg}')"
    );
    assert!(python(&run).status.success());
    assert!(python(&format!("r.fresh_folder('{fed_arg}')")).status.success(), "its own files are replaced");
    assert!(python(&run).status.success());
    std::fs::write(fed.join("NOTES.txt"), "mine").unwrap();
    let rerun = python(&format!("r.fresh_folder('{fed_arg}')"));
    assert_eq!(rerun.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&rerun.stderr).contains("holds 'NOTES.txt'"));
    assert!(fed.join("NOTES.txt").is_file() && fed.join("server/runs").is_dir(), "the folder is untouched");
}
