//! `make PARTY=server` / `PARTY=client-k`: each party of a FedMKT round on its own node, with
//! only its own data, exchanging only the round's files. Each node here is a folder that sees
//! the repository (Makefile, pipelines, tools, test data, built binaries) through symlinks and
//! has its own `runs/`, as a machine with a checkout would; the files that travel are copied
//! by the test, as the federation app (federation/) moves them.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fedmkt_tests::*;

const ROUNDS: u32 = 2;
const CLIENTS: [&str; 2] = ["client-1", "client-2"];

/// A node: a folder with the repository's shared parts linked in and its own `runs/`.
fn node(dir: &Path, name: &str) -> PathBuf {
    let node = dir.join(name);
    std::fs::create_dir_all(&node).unwrap();
    for shared in ["Makefile", "pipelines", "tools", "testdata", "target"] {
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

    let same = |node: &Path, rel: &str| {
        let (ours, reference) = (run_file(node, rel), run_file(&single, rel));
        assert!(std::fs::read(&ours).unwrap() == std::fs::read(&reference).unwrap(), "{rel} differs");
    };
    for rel in [format!("report-{ROUNDS}.parquet"), format!("report-{ROUNDS}.md")] {
        same(&server, &rel);
    }
    for n in 1..=ROUNDS {
        same(&server, &format!("round-{n}/server/adapter/adapter_model.safetensors"));
        same(&server, &format!("round-{n}/server/selected.parquet"));
        for (client, name) in clients.iter().zip(CLIENTS) {
            same(client, &format!("round-{n}/{name}/adapter/adapter_model.safetensors"));
            same(client, &format!("round-{n}/{name}/knowledge.parquet"));
            same(client, &format!("round-{n}/{name}/selected.parquet"));
        }
    }
    // Nothing private reached the server: no shard, no client adapter.
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
