//! `make round` end to end on the tiny test models (pipelines/tiny.mk): two rounds of FedMKT,
//! every file of a round where the design puts it, nothing redone on a second run, only the
//! dependents redone after deleting one file, and byte-identical adapters from two runs.
use std::path::Path;
use std::process::{Command, Output};

use fedmkt_tests::*;

/// `make` in the repository root on the tiny pipeline, runs under `runs`; the test has built
/// the tools already, so cargo is not run again (CARGO=true).
fn make(runs: &Path, extra: &[&str]) -> Output {
    make_target("round", runs, extra)
}

fn make_target(target: &str, runs: &Path, extra: &[&str]) -> Output {
    let output = Command::new("make")
        .current_dir(root())
        .args([target, "PIPELINE=pipelines/tiny.mk", "CARGO=true", "ROUND=2"])
        .arg(format!("RUNS={}", runs.display()))
        .args(extra)
        .output()
        .expect("make runs");
    assert_success(&output);
    output
}

/// The tool commands make ran, each on one line, in order.
fn commands(output: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).replace("\\\n", " ");
    stdout.lines().filter(|l| l.starts_with("target/release/")).map(String::from).collect()
}

/// The command make ran to make `out`.
fn command_making(output: &Output, out: &Path) -> String {
    commands(output)
        .into_iter()
        .find(|c| c.ends_with(&format!("--out {}", out.display())))
        .unwrap_or_else(|| panic!("no command makes {}", out.display()))
}

/// The output files of the tool commands make ran (their --out), in order.
fn outputs_made(output: &Output) -> Vec<String> {
    commands(output)
        .iter()
        .filter_map(|l| {
            l.split(" --out ").nth(1).map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
        })
        .collect()
}

const ROUND_FILES: &[&str] = &[
    "client-1/private/adapter_config.json",
    "client-1/knowledge.parquet",
    "server/from-client-1.parquet",
    "server/from-client-2.parquet",
    "server/selected.parquet",
    "server/adapter/adapter_model.safetensors",
    "server/knowledge.parquet",
    "client-2/from-server.parquet",
    "client-2/selected.parquet",
    "client-2/adapter/training_log.parquet",
    "eval/server.json",
    "eval/client-1.json",
    "eval/client-2.json",
    "comms.parquet",
    "comms.md",
];

#[test]
fn two_rounds_on_the_tiny_models() {
    let dir = tempdir();
    let runs = dir.path().join("a");
    let first = make(&runs, &["-j2"]);
    let run = runs.join("tiny");
    for n in 1..=2 {
        for file in ROUND_FILES {
            assert!(run.join(format!("round-{n}")).join(file).is_file(), "round {n}: {file} missing");
        }
    }
    assert!(run.join("round-1/server/local.parquet").is_file(), "round 1 infers the server's own losses");
    assert!(!run.join("round-2/server/local.parquet").exists(), "round 2 reuses round 1's server knowledge");

    // The printed table: methods as rows, parties as columns.
    let stdout = String::from_utf8_lossy(&first.stdout);
    for row in [
        "| method | server (tiny-llama) | client-1 (tiny-gemma3) | client-2 (tiny-gemma3) |",
        "| Zero-Shot |",
        "| FedMKT (round 1) |",
        "| FedMKT (round 2) |",
    ] {
        assert!(stdout.contains(row), "table lacks '{row}':\n{stdout}");
    }
    // Round 2 continues from round 1's adapters.
    let private = command_making(&first, &run.join("round-2/client-1/private"));
    assert!(
        private.contains(&format!("--adapter {}", run.join("round-1/client-1/adapter").display())),
        "round 2's private phase starts from round 1: {private}"
    );
    let server = command_making(&first, &run.join("round-2/server/adapter"));
    assert!(
        server.contains(&format!("--adapter {}", run.join("round-1/server/adapter").display())),
        "the server continues too: {server}"
    );

    // Communication: a client sends its knowledge set and receives the server's.
    let comms = fedmkt::io::read_parquet(&run.join("round-1/comms.parquet"), "comms").unwrap();
    let sent = comms.column::<arrow_array::UInt64Array>("sent_bytes").unwrap()[0].value(0);
    assert_eq!(sent, std::fs::metadata(run.join("round-1/client-1/knowledge.parquet")).unwrap().len());

    // Nothing to redo; after deleting the server's selection, only what depends on it.
    assert_eq!(outputs_made(&make(&runs, &[])), Vec::<String>::new());
    std::fs::remove_file(run.join("round-2/server/selected.parquet")).unwrap();
    let mut redone: Vec<String> = outputs_made(&make(&runs, &[]))
        .iter()
        .map(|p| p.trim_start_matches(&format!("{}/", run.display())).to_string())
        .collect();
    redone.sort();
    let mut expected = vec![
        "round-2/server/selected.parquet",
        "round-2/server/adapter",
        "round-2/server/knowledge.parquet",
        "round-2/eval/server.json",
        "round-2/client-1/from-server.parquet",
        "round-2/client-2/from-server.parquet",
        "round-2/client-1/selected.parquet",
        "round-2/client-2/selected.parquet",
        "round-2/client-1/adapter",
        "round-2/client-2/adapter",
        "round-2/eval/client-1.json",
        "round-2/eval/client-2.json",
        "round-2/comms.parquet",
        "report-2.parquet",
    ];
    expected.sort();
    assert_eq!(redone, expected);

    // Same pipeline, another folder, one job at a time: the same adapters, byte for byte.
    let again = dir.path().join("b");
    make(&again, &[]);
    let weights =
        |runs: &Path| std::fs::read(runs.join("tiny/round-2/client-2/adapter/adapter_model.safetensors")).unwrap();
    assert!(weights(&runs) == weights(&again), "a rerun gives other adapters");
}

#[test]
fn every_baseline_has_its_rows_in_the_report() {
    let dir = tempdir();
    let runs = dir.path();
    let report = runs.join("tiny/report.md");
    let output = make_target(
        &report.display().to_string(),
        runs,
        &["BASELINES=zero-shot standalone centralized fedavg llm2slm nokd"],
    );
    let text = std::fs::read_to_string(&report).unwrap();
    for row in [
        "| Zero-Shot |",
        "| Standalone | – |",
        "| Centralized |",
        "| FedAvg (round 2) | – |",
        "| LLM2SLM (round 1) |",
        "| FedMKT (round 2) |",
        "| FedMKT-noKD (round 2) |",
        "| FedMKT (round 2) | client-1 | FedMKT-noKD (round 2) |",
        "| FedMKT (round 2) | server | Centralized |",
        "## Communication per round",
        "| 2 | client-2 |",
        "## What knowledge distillation did",
    ] {
        assert!(text.contains(row), "report lacks '{row}':\n{text}");
    }
    // What KD did: every distilling party, every round, on the public set and against each
    // sender on held-out samples, with the noKD ablation beside it.
    let kd = fedmkt::io::read_parquet(&runs.join("tiny/kd.parquet"), "kd-report").unwrap();
    let (rounds, parties) =
        (kd.values::<arrow_array::types::UInt32Type>("round").unwrap(), kd.strings("party").unwrap());
    let (sets, teachers) = (kd.strings("set").unwrap(), kd.strings("teacher").unwrap());
    let rows: Vec<String> =
        (0..kd.num_rows()).map(|i| format!("{} {} {} {}", rounds[i], parties[i], sets[i], teachers[i])).collect();
    for round in [1, 2] {
        for (party, teacher) in
            [("client-1", "server"), ("client-2", "server"), ("server", "client-1"), ("server", "client-2")]
        {
            let row = format!("{round} {party} held-out {teacher}");
            assert!(rows.contains(&row), "no '{row}' row: {rows:?}");
            assert!(
                rows.iter().any(|r| r.starts_with(&format!("{round} {party} public "))),
                "{round} {party}: {rows:?}"
            );
        }
    }
    let nokd = kd.optional_values::<arrow_array::types::Float64Type>("kl_nokd").unwrap();
    assert!(nokd.iter().all(Option::is_some), "every row has the noKD KL beside it");
    // LLM2SLM's server never learns: its clients send nothing.
    let comms = fedmkt::io::read_parquet(&runs.join("tiny-llm2slm/round-1/comms.parquet"), "comms").unwrap();
    assert_eq!(comms.column::<arrow_array::UInt64Array>("sent_bytes").unwrap()[0].value(0), 0);
    assert!(!runs.join("tiny-llm2slm/round-1/server/adapter").exists());
    // Nor is its frozen LLM evaluated again: its row is Zero-Shot's.
    assert!(!runs.join("tiny-llm2slm/round-1/eval/server.json").exists());
    // One row per method, round and party: zero-shot 3, standalone 2, centralized 1, FedAvg 2×2,
    // LLM2SLM, FedMKT-noKD and FedMKT 2×3; and the mean of the two clients (one model) wherever
    // both have a row: zero-shot, standalone, FedAvg 2, the three methods 2 each.
    let table = fedmkt::io::read_parquet(&runs.join("tiny/report.parquet"), "results").unwrap();
    assert_eq!(table.num_rows(), 3 + 2 + 1 + 2 * 2 + 3 * (2 * 3) + (1 + 1 + 2 + 3 * 2));
    assert!(text.contains("| FedMKT (round 2) | clients-mean | FedAvg (round 2) |"), "{text}");
    // Budget matching: two rounds of 2 private epochs give the baselines 4 epochs.
    let log = fedmkt::io::read_parquet(
        &runs.join("tiny/baselines/standalone/epochs-4/client-1/training_log.parquet"),
        "training-log",
    );
    let epochs = log.unwrap().column::<arrow_array::UInt32Array>("epoch").unwrap()[0].values().iter().max().copied();
    assert_eq!(epochs, Some(3), "Standalone trains epochs 0..=3");
    assert!(runs.join("tiny/baselines/centralized/epochs-4/server/adapter_config.json").is_file());
    // The ablation trains with λ = 1.
    let nokd =
        fedmkt::io::read_parquet(&runs.join("tiny-nokd/round-1/server/adapter/training_log.parquet"), "training-log");
    assert_eq!(nokd.unwrap().provenance.extra["lambda"], "1");
    // Round 1's knowledge sets and the LLM's own losses are the parent's, copied, not inferred
    // again (LLM2SLM's LLM never learns and never needs its losses).
    let clients = ["client-1/knowledge.parquet", "client-2/knowledge.parquet"];
    let made = outputs_made(&output);
    for (sibling, files) in
        [("tiny-nokd", [&clients[..], &["server/local.parquet"]].concat()), ("tiny-llm2slm", clients.to_vec())]
    {
        for file in files {
            let (parent, copy) = (runs.join("tiny/round-1").join(file), runs.join(sibling).join("round-1").join(file));
            assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&parent).unwrap(), "{sibling}: {file}");
            assert!(!made.contains(&copy.display().to_string()), "{sibling} inferred {file} again");
        }
    }
}

/// Two rounds of `pipeline` (named `name`) with a tiny-llama server and a client of each of
/// `families` (Hugging Face folders, linked into the run, never written), every party
/// evaluated in both rounds; each client's adapter on its family's default modules.
fn a_round_runs_with_clients_of(pipeline: &str, name: &str, families: &[(&str, &[&str])]) {
    let dir = tempdir();
    let runs = dir.path();
    make(runs, &[&format!("PIPELINE=pipelines/{pipeline}")]);
    let run = runs.join(name);
    for (k, (family, targets)) in families.iter().enumerate() {
        let linked = run.join("models").join(family);
        assert!(linked.is_symlink(), "{family} was copied, not linked");
        assert_eq!(std::fs::canonicalize(&linked).unwrap(), root().join("testdata/models").join(family));
        for round in [1, 2] {
            let eval = run.join(format!("round-{round}/eval/client-{}.json", k + 1));
            assert!(read_json(&eval)["n"].as_u64().unwrap() > 0, "{family}: no evaluation in round {round}");
        }
        let adapter = read_json(&run.join(format!("round-1/client-{}/private/adapter_config.json", k + 1)));
        assert_eq!(adapter["target_modules"], serde_json::json!(targets), "{family}: adapted modules");
    }
    let table = fedmkt::io::read_parquet(&run.join("report-2.parquet"), "results").unwrap();
    let models = table.strings("model").unwrap();
    for family in std::iter::once("tiny-llama").chain(families.iter().map(|(f, _)| *f)) {
        assert!(models.iter().any(|m| m == family), "the report lacks {family}");
    }
}

const ATTENTION: &[&str] = &["k_proj", "o_proj", "q_proj", "v_proj"];

#[test]
fn a_round_runs_with_a_client_of_each_family() {
    let families = [("tiny-mistral", ATTENTION), ("tiny-qwen2", ATTENTION), ("tiny-qwen3", ATTENTION)];
    a_round_runs_with_clients_of("tiny-families.mk", "tiny-families", &families);
}

/// The SLM families of the paper's heterogeneous setting: GPT-2, OPT, Bloom.
#[test]
fn a_round_runs_with_a_client_of_each_paper_family() {
    let families: [(&str, &[&str]); 3] =
        [("tiny-gpt2", &["c_attn"]), ("tiny-opt", &["q_proj", "v_proj"]), ("tiny-bloom", &["query_key_value"])];
    a_round_runs_with_clients_of("tiny-paper-families.mk", "tiny-paper-families", &families);
}

#[test]
fn fedcollm_averages_securely_then_distils_both_ways() {
    let dir = tempdir();
    let runs = dir.path();
    let output = make(runs, &["METHOD=FedCoLLM", "NAME=tiny-fedcollm", "SECAGG_THRESHOLD=2"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for row in ["| method | server (tiny-llama) | slm (tiny-gemma3) |", "| FedCoLLM (round 2) |"] {
        assert!(stdout.contains(row), "table lacks '{row}':\n{stdout}");
    }
    // The server's SLM is the weighted average of the clients' adapters, learnt from masked files only.
    let round = runs.join("tiny-fedcollm/round-1");
    let plain = runs.join("plain");
    let clients = [round.join("client-1/private"), round.join("client-2/private")];
    assert_success(&run(
        "aggregate",
        [
            "average".as_ref(),
            "--adapters".as_ref(),
            clients[0].as_os_str(),
            clients[1].as_os_str(),
            "--out".as_ref(),
            plain.as_os_str(),
        ],
    ));
    assert_adapters_close(&round.join("server/slm"), &plain, 1e-6);
    assert!(round.join("server/slm-distilled/adapter_config.json").is_file());
    let private = command_making(&output, &runs.join("tiny-fedcollm/round-2/client-1/private"));
    assert!(
        private.contains(&format!("--adapter {}", round.join("server/slm-distilled").display())),
        "round 2 starts from the distilled SLM: {private}"
    );
}

/// `make seeds`: one full run per training seed (same split), pooled into one report.
#[test]
fn seeds_run_the_pipeline_once_per_training_seed_and_pool_the_reports() {
    let dir = tempdir();
    let runs = dir.path();
    let output = make_target("seeds", runs, &["SEEDS=1 2", "ROUND=1", "BASELINES=zero-shot standalone"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| FedMKT (round 1) |") && stdout.contains(" ± "), "pooled table:\n{stdout}");
    let table = fedmkt::io::read_parquet(&runs.join("tiny-seeds/report.parquet"), "results").unwrap();
    let seeds = table.column::<arrow_array::UInt32Array>("seeds").unwrap();
    assert!(seeds[0].values().iter().all(|&s| s == 2), "every row pools 2 seeds");
    // The split is SEED's in both runs; the training seed differs.
    let data = |s: u32| std::fs::read(runs.join(format!("tiny-seed-{s}/data/arc-easy/client-1.parquet"))).unwrap();
    assert!(data(1) == data(2), "the split changed with the training seed");
    let weights = |s: u32| {
        std::fs::read(runs.join(format!("tiny-seed-{s}/round-1/client-1/private/adapter_model.safetensors"))).unwrap()
    };
    assert!(weights(1) != weights(2), "both seeds trained the same adapter");
}

/// `make results/<setting>/<task>/report.md`: each seed published into its own folder
/// (evaluations, training logs, its report over the copies, seed.json) and the cell pooled from
/// those folders alone, so that a seed committed in one session is not run again in the next;
/// a seed removed is rebuilt with the same bytes. The seeds share one Zero-Shot evaluation,
/// and round 1's private phase is trained once per seed (Standalone and FedMKT-noKD use it).
#[test]
fn a_results_cell_publishes_each_seed_and_pools_the_published_copies() {
    let dir = tempdir();
    let (runs, results) = (dir.path().join("runs"), dir.path().join("results"));
    let cell = results.join("tiny/arc-easy");
    let target = cell.join("report.md");
    let settings = [
        "CELL_SETTINGS=tiny".to_string(),
        "CELL_TASKS=arc-easy".to_string(),
        "CELL_SEEDS=1 2".to_string(),
        format!("RESULTS={}", results.display()),
        "PLOT=no".to_string(),
        "ROUND=1".to_string(),
        "BASELINES=zero-shot standalone nokd".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    // `make -n` shows every seed's commands and its publication, and writes nothing.
    let dry = make_target(&target.to_string_lossy(), &runs, &[&settings[..], &["-n"]].concat());
    let shown = String::from_utf8_lossy(&dry.stdout);
    for s in [1, 2] {
        assert!(shown.contains(&format!("publish_cell.py seed {} tiny-seed-{s}", runs.display())), "{shown}");
        assert!(shown.contains(&format!("--out {}/tiny-seed-{s}/round-1/eval/client-1.json", runs.display())));
    }
    assert!(!runs.exists() && !results.exists(), "make -n wrote files");
    // Side by side (-j2), the seeds wait for one Zero-Shot run rather than both making it.
    let first = make_target(&target.to_string_lossy(), &runs, &[&settings[..], &["-j2"]].concat());
    let zero_shot = runs.join("tiny-zero-shot/baselines/zero-shot/tiny-llama.json");
    let made = outputs_made(&first).iter().filter(|out| Path::new(out) == zero_shot).count();
    assert_eq!(made, 1, "Zero-Shot of tiny-llama evaluated {made} times");
    for s in [1, 2] {
        let seed = cell.join(format!("seed-{s}"));
        for file in [
            "FedMKT-round-1-client-1.json",
            "FedMKT-noKD-round-1-server.parquet",
            "Zero-Shot-server.json",
            "comms-round-1.parquet",
        ] {
            assert!(seed.join(file).is_file(), "seed {s} lacks {file}");
        }
        let log = seed.join(format!("training/tiny-seed-{s}--round-1--client-1--private.parquet"));
        assert!(log.is_file(), "seed {s} lacks its private phase's training log");
        assert!(seed.join("kd.parquet").is_file() && seed.join("kd.md").is_file(), "seed {s} lacks what KD did");
        let published = read_json(&seed.join("seed.json"));
        assert!(published["wall_seconds"].is_u64());
        assert_eq!(published["resumed"], false, "seed {s} ran from scratch");
        assert!(published["machine"]["cpu"].as_str().is_some_and(|cpu| !cpu.is_empty()), "{published}");
        assert!(published["machine"]["simd"].is_array(), "{published}");
    }
    let table = fedmkt::io::read_parquet(&cell.join("report.parquet"), "results").unwrap();
    assert!(table.column::<arrow_array::UInt32Array>("seeds").unwrap()[0].values().iter().all(|&s| s == 2));
    let files = table.strings("file").unwrap();
    let parties = table.strings("party").unwrap();
    for (file, party) in files.iter().zip(&parties) {
        let derived = party == fedmkt::report::results::CLIENTS_MEAN;
        assert!(if derived { file.is_empty() } else { Path::new(file).starts_with(&cell) }, "{party}: {file}");
    }
    assert!(parties.iter().any(|p| p == fedmkt::report::results::CLIENTS_MEAN), "the two clients' mean is missing");
    assert_eq!(read_json(&cell.join("cell.json"))["seeds"], serde_json::json!(["1", "2"]));
    // Work done once: Zero-Shot for both seeds, round 1's private phase for Standalone and the ablation.
    assert!(zero_shot.is_file());
    assert!(!runs.join("tiny-seed-1/baselines/zero-shot").exists());
    assert!(!runs.join("tiny-seed-1/baselines/standalone/epochs-2/client-1").exists());
    assert!(!runs.join("tiny-seed-1-nokd/round-1/client-1/private").exists());
    // Without runs/ and with seed 2 removed, only seed 2 runs again, to the same bytes.
    let seed2 = cell.join("seed-2");
    let before: Vec<Vec<u8>> = ["report.parquet", "FedMKT-round-1-client-2.parquet"]
        .iter()
        .map(|f| std::fs::read(seed2.join(f)).unwrap())
        .collect();
    std::fs::remove_dir_all(&runs).unwrap();
    std::fs::remove_dir_all(&seed2).unwrap();
    let output = make_target(&target.to_string_lossy(), &runs, &settings);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("tiny-seed-1/") && stdout.contains("tiny-seed-2/"), "{stdout}");
    let after: Vec<Vec<u8>> = ["report.parquet", "FedMKT-round-1-client-2.parquet"]
        .iter()
        .map(|f| std::fs::read(seed2.join(f)).unwrap())
        .collect();
    assert!(before == after, "seed 2 rebuilt to other bytes");
    // A seed published from a run folder already there says so: its wall time is not the run's.
    assert_eq!(read_json(&seed2.join("seed.json"))["resumed"], false);
    std::fs::remove_dir_all(&seed2).unwrap();
    make_target(&target.to_string_lossy(), &runs, &settings);
    assert_eq!(read_json(&seed2.join("seed.json"))["resumed"], true);
    assert_eq!(read_json(&cell.join("cell.json"))["resumed_seeds"], serde_json::json!(["2"]));
    // The seeds ran one pipeline: a seed published under other settings is refused, not pooled.
    assert_eq!(read_json(&cell.join("cell.json"))["settings"]["CLIENT_LR"], "1e-2");
    let seed_json = seed2.join("seed.json");
    let stale =
        std::fs::read_to_string(&seed_json).unwrap().replace(r#""CLIENT_LR": "1e-2""#, r#""CLIENT_LR": "3e-4""#);
    std::fs::write(&seed_json, stale).unwrap();
    let pooled = Command::new("python3")
        .current_dir(root())
        .args(["tools/report/publish_cell.py", "cell"])
        .arg(&cell)
        .args(["make", "1", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&pooled.stderr);
    assert_eq!(pooled.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("seed-2/seed.json: CLIENT_LR = '3e-4', seed 1 ran '1e-2'"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `make tasks`: the pipeline once per task, one table of them all (task and method as rows).
#[test]
fn tasks_run_the_pipeline_once_per_task_into_one_table() {
    let dir = tempdir();
    let runs = dir.path();
    let output = make_target("tasks", runs, &["TASKS=arc-easy boolq", "ROUND=1", "BASELINES=zero-shot", "PLOT=no"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for row in ["| task | method | server (tiny-llama) |", "| arc-easy | FedMKT (round 1) |", "| boolq | Zero-Shot |"] {
        assert!(stdout.contains(row), "table lacks '{row}':\n{stdout}");
    }
    let table = fedmkt::io::read_parquet(&runs.join("tiny-tasks/report.parquet"), "task-results").unwrap();
    let per_task = |task: &str| {
        fedmkt::io::read_parquet(&runs.join(format!("tiny-task-{task}/report.parquet")), "results").unwrap().num_rows()
    };
    assert_eq!(table.num_rows(), per_task("arc-easy") + per_task("boolq"));
    assert_eq!(table.strings("task").unwrap().iter().filter(|t| *t == "boolq").count(), per_task("boolq"));
    let split = |task: &str| {
        let path = runs.join(format!("tiny-task-{task}/data/{task}/eval.parquet"));
        fedmkt::io::read_parquet(&path, "task").unwrap().provenance.extra["task"].clone()
    };
    assert_eq!((split("arc-easy"), split("boolq")), ("arc-easy".to_string(), "boolq".to_string()));
}

/// `make sweep-lr`: Standalone once per rate, scored on the validation split, never the eval set.
#[test]
fn the_learning_rate_sweep_scores_on_the_validation_split() {
    let dir = tempdir();
    let runs = dir.path();
    make_target("sweep-lr", runs, &["SWEEP_LRS=1e-3 1e-2", "EVAL_SPLIT=test"]);
    let text = std::fs::read_to_string(runs.join("tiny/baselines/sweep-lr/report.md")).unwrap();
    assert!(text.contains("| Standalone-lr-1e-3 |") && text.contains("| Standalone-lr-1e-2 |"), "{text}");
    let split =
        |rel: &str| fedmkt::io::read_parquet(&runs.join(rel), "task").unwrap().provenance.extra["eval_split"].clone();
    assert_eq!(split("tiny/data/arc-easy-validation/eval.parquet"), "validation");
    assert_eq!(split("tiny/data/arc-easy/eval.parquet"), "test", "the eval set is the test split");
}

/// Where validation is the eval split (BoolQ), the sweep scores on train samples held out of
/// every part (HOLDOUT), never on the eval set nor on data a party trains on.
#[test]
fn the_sweep_scores_on_a_holdout_where_validation_is_the_eval_split() {
    let dir = tempdir();
    let runs = dir.path();
    make_target("sweep-lr", runs, &["SWEEP_LRS=1e-3", "TASK=boolq", "HOLDOUT=2", "SWEEP_SPLIT=holdout"]);
    let read = |rel: &str| fedmkt::io::read_parquet(&runs.join(format!("tiny/data/{rel}.parquet")), "task").unwrap();
    let sweep = read("boolq-holdout/eval");
    assert_eq!((sweep.provenance.extra["eval_split"].as_str(), sweep.num_rows()), ("holdout", 2));
    assert_eq!(read("boolq/eval").provenance.extra["eval_split"], "validation");
    let held = sweep.strings("id").unwrap();
    for part in ["public", "client-1", "client-2"] {
        let ids = read(&format!("boolq/{part}")).strings("id").unwrap();
        assert!(held.iter().all(|id| !ids.contains(id)), "{part} holds a held-out sample");
        assert_eq!(
            ids,
            read(&format!("boolq-holdout/{part}")).strings("id").unwrap(),
            "{part} differs beside the sweep"
        );
    }
}

/// TEACHER_TAIL=yes reaches every KD step, and only those.
#[test]
fn teacher_tail_reaches_every_distillation_and_no_private_phase() {
    let dir = tempdir();
    let runs = dir.path();
    let output = make(runs, &["TEACHER_TAIL=yes", "ROUND=1"]);
    let run = runs.join("tiny/round-1");
    for kd in ["server/adapter", "client-1/adapter", "client-2/adapter"] {
        assert!(command_making(&output, &run.join(kd)).contains("--teacher-tail"), "{kd} distils without the tail");
    }
    assert!(!command_making(&output, &run.join("client-1/private")).contains("--teacher-tail"));
}

/// TEACHER_SAMPLING=yes: every knowledge set of the public set is TOP_K draws seeded by the
/// training seed, and the sets that travel carry it to the selections the parties distil.
#[test]
fn teacher_sampling_reaches_every_knowledge_set_and_selection() {
    let dir = tempdir();
    let output = make(dir.path(), &["TEACHER_SAMPLING=yes", "ROUND=1"]);
    let run = dir.path().join("tiny/round-1");
    for set in ["server/local.parquet", "server/knowledge.parquet", "client-1/knowledge.parquet"] {
        assert!(command_making(&output, &run.join(set)).contains("--sample 4 --seed 7"), "{set} is a top-K");
    }
    for selected in ["server/selected.parquet", "client-2/selected.parquet"] {
        let table = fedmkt::io::read_parquet(&run.join(selected), "selected").unwrap();
        assert_eq!(table.provenance.extra.get("sampled").map(String::as_str), Some("4"), "{selected}");
    }
}

/// A GGUF model is imported once for all the runs under RUNS and linked into each (the real
/// pair is 1.6 GB in f32): a second run imports nothing. A run that swaps the import stage
/// imports into its own folder, the stage's output being the run's.
#[test]
fn a_gguf_model_is_imported_once_for_all_runs() {
    let dir = tempdir();
    let runs = dir.path();
    let imports = |output: &Output| String::from_utf8_lossy(&output.stdout).matches("release/import-gguf ").count();
    assert_eq!(imports(&make_target("setup", runs, &[])), 2, "one import per model");
    assert_eq!(imports(&make_target("setup", runs, &["NAME=other"])), 0, "the second run imported again");
    for name in ["tiny", "other"] {
        for model in ["tiny-llama", "tiny-gemma3"] {
            let folder = std::fs::read_link(runs.join(name).join("models").join(model)).unwrap();
            assert_eq!(folder, runs.join("imported-models").join(model), "{name}/{model}");
        }
    }
    let own_import = root().join("target/release/import-gguf");
    let swapped = make_target("setup", runs, &["NAME=own", &format!("IMPORT_GGUF={}", own_import.display())]);
    assert_eq!(imports(&swapped), 2);
    assert!(runs.join("own/models/tiny-llama/config.json").is_file());
    assert!(!runs.join("own/models/tiny-llama").is_symlink(), "a swapped import stage's output is the run's own");
}

/// A client with the server's own model (the heterogeneous setting) has one map from the model
/// to itself, made by one rule: make warns of no recipe defined twice.
#[test]
fn a_client_with_the_servers_model_has_one_map_to_itself() {
    let dir = tempdir();
    let output = make_target("setup", dir.path(), &["-n", "CLIENT_MODELS=tiny-gemma3 tiny-llama"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("warning"), "make warns:\n{stderr}");
    let map = dir.path().join("tiny/maps/tiny-llama_to_tiny-llama.parquet");
    assert!(command_making(&output, &map).starts_with("target/release/vocab-map"));
}

/// PUBLIC_LABELS=no: the public set's questions alone. Its phase trains on KD alone (λ = 0)
/// over every position of the questions, and no answer of the public task file is read: a
/// copy whose answers are blanked before tokenisation gives the same bytes everywhere.
#[test]
fn an_unlabelled_public_set_is_distilled_alone_and_its_answers_are_never_read() {
    let dir = tempdir();
    let [labelled, unlabelled, blanked] = ["labelled", "unlabelled", "blanked"].map(|n| dir.path().join(n));
    make(&labelled, &["ROUND=1"]);
    let output = make(&unlabelled, &["ROUND=1", "PUBLIC_LABELS=no"]);
    let file = |runs: &Path, path: &str| std::fs::read(runs.join("tiny").join(path)).unwrap();
    for party in ["server", "client-1"] {
        let adapter = format!("round-1/{party}/adapter/adapter_model.safetensors");
        assert!(file(&labelled, &adapter) != file(&unlabelled, &adapter), "{party}: the labels made no difference");
    }
    let run = unlabelled.join("tiny");
    for party in ["server", "client-1"] {
        let distill = command_making(&output, &run.join(format!("round-1/{party}/adapter")));
        assert!(distill.contains("--lambda 0 "), "{distill}");
    }
    assert!(command_making(&output, &run.join("tok/tiny-llama/public.parquet")).contains("--unlabelled"));
    assert!(command_making(&output, &run.join("round-1/server/local.parquet")).contains("--all-positions"));

    // The same run with the public set's answers blanked once it is cut.
    make_target(&format!("{}/tiny/data/arc-easy/eval.parquet", blanked.display()), &blanked, &["PUBLIC_LABELS=no"]);
    let public = blanked.join("tiny/data/arc-easy/public.parquet");
    let (mut records, table) = fedmkt::data::read_tasks(&public).unwrap();
    for record in &mut records {
        record.choices = vec![String::new(); record.choices.len()];
        record.gold = 0;
    }
    let (schema, batch) = fedmkt::data::tasks_batch(&records).unwrap();
    std::fs::remove_file(&public).unwrap();
    fedmkt::io::write_parquet(&public, schema, &[batch], &table.provenance).unwrap();
    make(&blanked, &["ROUND=1", "PUBLIC_LABELS=no"]);
    for path in [
        "tok/tiny-gemma3/public.parquet",
        "round-1/server/selected.parquet",
        "round-1/client-2/selected.parquet",
        "round-1/server/adapter/adapter_model.safetensors",
        "round-1/client-1/adapter/adapter_model.safetensors",
    ] {
        assert!(file(&unlabelled, path) == file(&blanked, path), "{path} depends on the public answers");
    }
}

/// A setting a user gives that cannot work stops make with one line naming the variable and
/// its value, before anything runs: a ROUND that is not a whole number (it ran nothing, or one
/// round, and exited 0), a pipeline file that is not there, a NAME of two words, a model no
/// pipeline defines, a federation's timeout or kill that could not apply, a stage's program
/// that is not one or is not there, the alignment strategy given as ALIGN (now the program).
#[test]
fn a_setting_that_cannot_work_stops_make() {
    let dir = tempdir();
    let mut cases: Vec<(String, String)> =
        ["0", "abc", "-1", "1.5", ""].iter().map(|r| (format!("ROUND={r}"), format!("ROUND '{r}'"))).collect();
    for (setting, says) in [
        ("PIPELINE=pipelines/nope.mk", "PIPELINE 'pipelines/nope.mk'"),
        ("NAME=my run", "NAME 'my run'"),
        ("SERVER=nope", "model 'nope'"),
        ("FEDERATION_TIMEOUT=abc", "FEDERATION_TIMEOUT 'abc'"),
        ("FEDERATION_KILL=client-9@x", "FEDERATION_KILL 'client-9@x'"),
        ("ALIGN=offsets", "ALIGN 'offsets': ALIGN is the align stage's program; the strategy is ALIGN_STRATEGY"),
        ("SELECT=examples/nope.py", "SELECT 'examples/nope.py': no such program"),
        ("DISTILL=python3 my_distill.py", "DISTILL 'python3 my_distill.py': one program"),
        ("TEACHER_SHARDS=1", "TEACHER_SHARDS '1': a teacher is frozen"),
        ("TEACHER_SHARDS=x", "TEACHER_SHARDS 'x'"),
    ] {
        cases.push((setting.to_string(), says.to_string()));
    }
    for (setting, says) in cases {
        let pipeline =
            if setting.starts_with("PIPELINE=") { setting.clone() } else { "PIPELINE=pipelines/tiny.mk".into() };
        let output = Command::new("make")
            .current_dir(root())
            .args(["round", &pipeline, "CARGO=true", &setting])
            .arg(format!("RUNS={}", dir.path().display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{setting}: {stderr}");
        assert!(stderr.contains(&says) && stderr.lines().count() == 1, "{setting}: {stderr}");
    }
    assert!(files_below(dir.path()).is_empty(), "nothing was made");
}

/// Every runnable pipeline parses and plans its round (`make -n`, nothing run): the checks of
/// the settings must not stop a pipeline whose settings are right.
#[test]
fn every_pipeline_plans_its_round() {
    let dir = tempdir();
    for entry in std::fs::read_dir(root().join("pipelines")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "paper-protocol.mk" || name == "real-models.mk" {
            continue; // fragments that pipelines include, not pipelines
        }
        let output = Command::new("make")
            .current_dir(root())
            .args(["-n", "round", &format!("PIPELINE=pipelines/{name}"), "CARGO=true"])
            .arg(format!("RUNS={}", dir.path().display()))
            .output()
            .unwrap();
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

/// TEACHER_SHARDS: the frozen server is a teacher fine-tuned on train parts that are no
/// client's and not the public set, trained once and shared with the noKD sibling; its
/// knowledge is what the clients distil from, and its evaluation is the server's row.
#[test]
fn a_frozen_teacher_learns_from_parts_no_client_holds() {
    let dir = tempdir();
    let runs = dir.path();
    make_target(
        &format!("{}/tiny/report.md", runs.display()),
        runs,
        &["ROUND=1", "TEACHER_SHARDS=2", "SERVER_LEARNS=no", "BASELINES=zero-shot nokd"],
    );
    let run = runs.join("tiny");
    let ids = |rel: &str| -> std::collections::BTreeSet<String> {
        fedmkt::io::read_parquet(&run.join(rel), "task").unwrap().strings("id").unwrap().into_iter().collect()
    };
    // What the teacher trained on, as its training log lists it.
    let teacher: std::collections::BTreeSet<String> =
        trained_samples(&run.join("teacher/shards-2")).into_iter().flatten().collect();
    assert_eq!(teacher.len(), 10, "two parts of five samples");
    for own in ["public", "client-1", "client-2"] {
        assert!(ids(&format!("data/arc-easy/{own}.parquet")).is_disjoint(&teacher), "the teacher saw {own}'s samples");
        assert_eq!(ids(&format!("data/arc-easy/{own}.parquet")), ids(&format!("data/arc-easy-teacher/{own}.parquet")));
    }
    let adapter = run.join("teacher/shards-2");
    let knowledge = fedmkt::io::read_parquet(&run.join("round-1/server/knowledge.parquet"), "knowledge").unwrap();
    let weights = fedmkt::io::file_hash(&adapter.join("adapter_model.safetensors")).unwrap();
    assert_eq!(knowledge.input_hash("adapter").unwrap(), weights, "the server's knowledge is the teacher's");
    assert_eq!(read_json(&run.join("round-1/eval/server.json"))["adapter"], adapter.display().to_string());
    assert!(!runs.join("tiny-nokd/teacher").exists(), "the sibling trains no teacher of its own");
    let sibling =
        fedmkt::io::read_parquet(&runs.join("tiny-nokd/round-1/server/knowledge.parquet"), "knowledge").unwrap();
    assert_eq!(sibling.input_hash("adapter").unwrap(), weights);
}

/// The accuracy of `method` for `party` in a run's (or a published point's) report.parquet.
fn accuracy_in(run: &Path, method: &str, party: &str) -> f64 {
    let report = fedmkt::io::read_parquet(&run.join("report.parquet"), "results").unwrap();
    let (methods, parties) = (report.strings("method").unwrap(), report.strings("party").unwrap());
    let row = (0..methods.len()).find(|&j| methods[j] == method && parties[j] == party);
    report.values::<arrow_array::types::Float64Type>("acc").unwrap()[row.expect("no such row")]
}

/// `make teacher-curve`: a run per teacher strength and student configuration, the teacher
/// trained and evaluated once for all its configurations, and curve.parquet setting each
/// run's KD gain (FedMKT against FedMKT-noKD, paired) beside the teacher's advantage.
#[test]
fn the_teacher_curve_sets_kd_gain_beside_the_teachers_advantage() {
    let dir = tempdir();
    let runs = dir.path();
    let results = runs.join("results");
    let curve_settings = [
        "NAME=tc",
        "ROUND=1",
        "CURVE_SERVERS=tiny-llama",
        "CURVE_SHARDS=0 2",
        "CURVE_CONFIGS=yes:0.9 no:0",
        "SERVER_LEARNS=no",
        "BASELINES=zero-shot nokd",
        "PLOT=no",
        &format!("RESULTS={}", results.display()),
    ];
    let output = make_target("teacher-curve", runs, &curve_settings);
    let trained: Vec<String> = outputs_made(&output).into_iter().filter(|o| o.contains("/teacher/")).collect();
    assert_eq!(
        trained,
        vec![format!("{}/tc-tiny-llama-parts-2-labels-yes-lambda-0.9/teacher/shards-2", runs.display())]
    );
    let curve = fedmkt::io::read_parquet(&runs.join("tc-curve/curve.parquet"), "teacher-curve").unwrap();
    assert_eq!(curve.num_rows(), 4);
    let names = curve.strings("run").unwrap();
    let advantage = curve.values::<arrow_array::types::Float64Type>("advantage_acc").unwrap();
    let kd = curve.values::<arrow_array::types::Float64Type>("kd_acc_diff").unwrap();
    for (i, name) in names.iter().enumerate() {
        let of = |method: &str, party: &str| accuracy_in(&runs.join(name), method, party);
        assert_eq!(advantage[i], of("FedMKT", "server") - of("FedMKT-noKD", "client-1"), "{name}");
        assert_eq!(kd[i], of("FedMKT", "client-1") - of("FedMKT-noKD", "client-1"), "{name}");
    }
    // Committed: each run published as a cell's seed is, and the same curve from the copies.
    make_target(&format!("{}/tc/arc-easy/curve.md", results.display()), runs, &curve_settings);
    let cell = results.join("tc/arc-easy");
    let published = fedmkt::io::read_parquet(&cell.join("curve.parquet"), "teacher-curve").unwrap();
    assert_eq!(published.values::<arrow_array::types::Float64Type>("kd_acc_diff").unwrap(), kd);
    for name in published.strings("run").unwrap() {
        let point = cell.join(&name);
        assert!(runs.join(format!("tc-{name}")).is_dir(), "{name} is a run's copy");
        assert!(read_json(&point.join("seed.json"))["resumed"].as_bool().unwrap(), "{name}: published from the run");
        let report = fedmkt::io::read_parquet(&point.join("report.parquet"), "results").unwrap();
        for path in report.strings("file").unwrap().into_iter().filter(|p| !p.is_empty()) {
            assert!(path.starts_with(&point.display().to_string()), "{name}: {path} is not a copy");
        }
    }
    let teacher_log = cell.join("tiny-llama-parts-2-labels-yes-lambda-0.9/training/tc-tiny-llama-parts-2-labels-yes-lambda-0.9--teacher--shards-2.parquet");
    assert!(teacher_log.is_file(), "the teacher's training log is published with its first configuration");
    // A variant at one point (sampled KD), set beside the committed curve's student there.
    let variant =
        ["NAME=tc-sampled", "TEACHER_SAMPLING=yes", "CURVE_BESIDE=tc", "CURVE_SHARDS=2", "CURVE_CONFIGS=no:0"];
    let variant: Vec<&str> = curve_settings.iter().copied().chain(variant).collect();
    make_target(&format!("{}/tc-sampled/arc-easy/curve.md", results.display()), runs, &variant);
    let point = |curve: &str| results.join(curve).join("arc-easy/tiny-llama-parts-2-labels-no-lambda-0");
    let beside = fedmkt::io::read_parquet(&point("tc-sampled").join("beside/paired.parquet"), "paired").unwrap();
    let (methods, against) = (beside.strings("method").unwrap(), beside.strings("against_method").unwrap());
    let row = (0..beside.num_rows()).find(|&i| methods[i] == "tc-sampled" && against[i] == "tc").expect("beside tc");
    let diff = beside.values::<arrow_array::types::Float64Type>("acc_diff").unwrap()[row];
    let student = |curve: &str| accuracy_in(&point(curve), "FedMKT", "client-1");
    assert!((diff - (student("tc-sampled") - student("tc"))).abs() < 1e-12, "Δ acc {diff}");
    assert!(against.iter().any(|a| a == "FedMKT-noKD"), "no row beside the noKD sibling");
}

/// `make results/<curve>/<task>/curve.md` from any pipeline hands the target to the curve's
/// own pipeline's make (the curve and its two variants), also when a committed curve.md makes
/// it look up to date.
#[test]
fn a_committed_curve_is_remade_by_its_pipeline_from_any_pipeline() {
    for (curve, point) in [
        ("teacher-curve", "gemma3-270m-parts-4-labels-no-lambda-0"),
        ("teacher-curve-sampled", "smollm2-135m-parts-4-labels-no-lambda-0"),
        ("teacher-curve-fallback-self", "smollm2-135m-parts-4-labels-no-lambda-0"),
    ] {
        let dir = tempdir();
        let results = dir.path().join("results");
        let committed = results.join(curve).join("arc-easy/curve.md");
        std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
        std::fs::write(&committed, "a committed curve with fewer points\n").unwrap();
        let settings = [format!("RESULTS={}", results.display()), "CURVE_SHARDS=4".into(), "-n".into()];
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let dry = make_target(&committed.to_string_lossy(), &dir.path().join("runs"), &settings);
        let shown = String::from_utf8_lossy(&dry.stdout);
        let published = results.join(curve).join("arc-easy").join(point);
        assert!(shown.contains(&format!("--copy-into {} ", published.display())), "{curve}: {shown}");
        assert!(shown.contains("teacher_curve.py"), "{curve}: {shown}");
        assert!(shown.contains(&format!("PIPELINE=pipelines/{curve}.mk ")), "{curve}: {shown}");
    }
}

/// FedCoLLM's report: its baselines (Standalone, Centralized, FedAvg, its noKD ablation), the
/// claims of its paper with verdicts, what KD did between the LLM and the averaged SLM, and a
/// client's bytes counting the protocol's messages.
#[test]
fn fedcollm_reports_its_claims_beside_its_baselines() {
    let dir = tempdir();
    let runs = dir.path();
    let report = runs.join("tiny-fedcollm/report.md");
    make_target(
        &report.display().to_string(),
        runs,
        &["PIPELINE=pipelines/tiny-fedcollm.mk", "ROUND=1", "BASELINES=zero-shot standalone centralized fedavg nokd"],
    );
    let text = std::fs::read_to_string(&report).unwrap();
    for claim in [
        "| SLM FedCoLLM > FedAvg | client-1 | 1 |",
        "| SLM FedCoLLM > Standalone | client-2 | 1 |",
        "| LLM FedCoLLM ≥ Zero-Shot | server | 1 |",
        "| LLM FedCoLLM comparable to Centralized | server | 1 |",
        "| SLM FedCoLLM > FedCoLLM-noKD (KD's share) | slm | 1 |",
        "| LLM FedCoLLM > FedCoLLM-noKD (KD's share) | server | 1 |",
        "| 1 | server | public | slm |",
        "| 1 | server | held-out | slm |",
        "| 1 | slm | public | server |",
        "| 1 | slm | held-out | server |",
    ] {
        assert!(text.contains(claim), "no claim line '{claim}':\n{text}");
    }
    let round = runs.join("tiny-fedcollm/round-1");
    let size = |rel: &str| std::fs::metadata(round.join(rel)).unwrap().len();
    let sent = size("secagg/masked/client-1.parquet")
        + size("secagg/client-1/public.json")
        + size("secagg/shares/from-1/to-2.json")
        + size("secagg/shares/from-1/to-3.json")
        + size("secagg/signatures/1.json")
        + size("secagg/reveal/1.json");
    let comms = fedmkt::io::read_parquet(&round.join("comms.parquet"), "comms").unwrap();
    let bytes = |column: &str| comms.optional_values::<arrow_array::types::UInt64Type>(column).unwrap()[0];
    assert_eq!(bytes("sent_bytes"), Some(sent));
    // Beside it, what FedMKT moves for the same client: a knowledge set each way.
    assert_eq!(bytes("fedmkt_sent_bytes"), Some(size("server/slm-knowledge.parquet")));
    assert_eq!(bytes("fedmkt_received_bytes"), Some(size("server/knowledge.parquet")));
    assert!(text.contains("| FedMKT sends / receives |"), "{text}");
}
