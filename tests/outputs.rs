//! What a tool may write (FORMATS.md, "Outputs"): never over a folder or file it did not
//! write, never over its own inputs, several files together or not at all, and a killed
//! run's temporaries removed by the next run. Each case is run against the real binaries.
use std::path::{Path, PathBuf};

use fedmkt_tests::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A copy of `src` (a file or a flat folder) under `dir`, to run tools on without touching testdata.
fn copy(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().unwrap());
    if src.is_dir() {
        std::fs::create_dir_all(&dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
    } else {
        std::fs::copy(src, &dst).unwrap();
    }
    dst
}

/// Every file below `dir` with its content hash, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> =
        files_below(dir).into_iter().map(|p| (p.clone(), fedmkt::io::file_hash(&p).unwrap())).collect();
    files.sort();
    files
}

/// The id of a process that has exited: a killed run's temporaries name such a process.
fn dead_pid() -> u32 {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    pid
}

fn distill(model: &Path, data: &Path, out: &Path) -> std::process::Output {
    run("distill", ["--model", &s(model), "--data", &s(data), "--lr", "1e-2", "--out", &s(out)])
}

#[test]
fn a_folder_or_file_the_tool_did_not_write_is_never_replaced() {
    let dir = tempdir();
    let model = copy(&testdata("models/tiny-llama"), dir.path());
    let data = copy(&testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"), dir.path());
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.tex"), "years of work").unwrap();
    let task = copy(&testdata("data/tasks/arc-easy/eval.parquet"), dir.path());
    let before = snapshot(dir.path());
    // The current folder, a folder of the user's, a model folder, a plain file.
    let cwd = std::process::Command::new(bin("distill"))
        .args(["--model", &s(&model), "--data", &s(&data), "--lr", "1e-2", "--out", "."])
        .current_dir(&mine)
        .output()
        .unwrap();
    assert_bad_input(&cwd, &["is a folder", "refusing to replace"]);
    assert_bad_input(&distill(&model, &data, &mine), &["mine", "is a folder"]);
    let gguf = testdata("models/tiny-llama.gguf");
    assert_bad_input(&run("import-gguf", [&s(&gguf), "--out", &s(&mine)]), &["mine", "not a model folder"]);
    let thesis = mine.join("thesis.tex");
    assert_bad_input(
        &run(
            "aggregate",
            ["average", "--adapters", &s(&testdata("models/tiny-llama-lora")), "--weights", "1", "--out", &s(&thesis)],
        ),
        &["thesis.tex", "is a file"],
    );
    let tokenizer = model.join("tokenizer.json");
    assert_bad_input(
        &run("tokenize", ["--tokenizer", &s(&tokenizer), "--input", &s(&task), "--out", &s(&thesis)]),
        &["thesis.tex", "exists"],
    );
    assert_eq!(snapshot(dir.path()), before, "a refused run changed files");
}

#[test]
fn an_output_that_is_inside_or_contains_an_input_is_refused() {
    let dir = tempdir();
    let model = copy(&testdata("models/tiny-llama"), dir.path());
    let data = copy(&testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"), dir.path());
    let task = copy(&testdata("data/tasks/arc-easy/eval.parquet"), dir.path());
    let tokenizer = model.join("tokenizer.json");
    let before = snapshot(dir.path());
    // --out the input itself (a Parquet file of ours, so only the overlap rule stops it).
    let same = run("tokenize", ["--tokenizer", &s(&tokenizer), "--input", &s(&task), "--out", &s(&task)]);
    assert_bad_input(&same, &["overlaps the input"]);
    let tok = run("vocab-map", ["--from", &s(&tokenizer), "--to", &s(&tokenizer), "--out", &s(&tokenizer)]);
    assert_bad_input(&tok, &["tokenizer.json", "overlaps the input"]);
    // --out inside the model folder, and --out a folder holding an input.
    assert_bad_input(&distill(&model, &data, &model.join("adapter")), &["overlaps the input", "tiny-llama"]);
    assert_bad_input(&distill(&model, &data, dir.path()), &["overlaps the input"]);
    // The same file through another spelling of its path.
    let dotted = dir.path().join("tiny-llama/../eval.parquet");
    let tokens = run("tokenize", ["--tokenizer", &s(&tokenizer), "--input", &s(&task), "--out", &s(&dotted)]);
    assert_bad_input(&tokens, &["overlaps the input"]);
    assert_eq!(snapshot(dir.path()), before, "a refused run changed files");
}

#[test]
fn an_earlier_output_of_the_same_tool_is_replaced_whole() {
    let dir = tempdir();
    let (model, data) = (testdata("models/tiny-llama"), testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"));
    let out = dir.path().join("adapter");
    assert_success(&distill(&model, &data, &out));
    let first = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    std::fs::write(out.join("adapter_model.safetensors"), b"stale").unwrap();
    assert_success(&distill(&model, &data, &out));
    assert_eq!(std::fs::read(out.join("adapter_model.safetensors")).unwrap(), first);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["adapter"], "only the adapter folder remains (no old copy, no temporaries)");
}

#[test]
fn two_file_outputs_appear_together_or_not_at_all() {
    let dir = tempdir();
    let tokenizer = testdata("models/tiny-llama/tokenizer.json");
    let gemma = testdata("models/tiny-gemma3/tokenizer.json");
    // vocab-map: a foreign .map where the flat map goes: neither file is written.
    let out = dir.path().join("m.parquet");
    std::fs::write(dir.path().join("m.map"), "not ours").unwrap();
    assert_bad_input(
        &run("vocab-map", ["--from", &s(&tokenizer), "--to", &s(&gemma), "--out", &s(&out)]),
        &["m.map", "refusing"],
    );
    assert!(!out.exists());
    std::fs::remove_file(dir.path().join("m.map")).unwrap();
    assert_success(&run("vocab-map", ["--from", &s(&tokenizer), "--to", &s(&gemma), "--out", &s(&out)]));
    assert!(dir.path().join("m.map").is_file());
    // evaluate: --out x.parquet would be its own predictions file.
    let (model, task) = (testdata("models/tiny-llama"), testdata("data/tasks/arc-easy/eval.parquet"));
    let eval =
        |out: &Path| run("evaluate", ["--model", &s(&model), "--data", &s(&task), "--limit", "2", "--out", &s(out)]);
    assert_bad_input(&eval(&dir.path().join("x.parquet")), &["x.parquet", "written twice"]);
    // A foreign file where the predictions go: the summary is not written either.
    std::fs::write(dir.path().join("e.parquet"), "user data").unwrap();
    assert_bad_input(&eval(&dir.path().join("e.json")), &["e.parquet", "refusing"]);
    assert!(!dir.path().join("e.json").exists());
    assert_eq!(std::fs::read(dir.path().join("e.parquet")).unwrap(), b"user data");
}

/// What a run killed with `kill -9` leaves (a process id that no longer exists): the next run
/// into the same place removes it; a temporary of a live process stays.
#[test]
fn a_killed_runs_temporaries_are_removed_by_the_next_run() {
    let dir = tempdir();
    let out = dir.path().join("model");
    let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let live_pid = child.id();
    let dead_pid = dead_pid();
    let stale_folder = dir.path().join(format!(".model.fedmkt-{dead_pid}-00000000000000aa.tmp"));
    std::fs::create_dir(&stale_folder).unwrap();
    std::fs::write(stale_folder.join("model.safetensors"), vec![0u8; 1 << 20]).unwrap();
    let live = dir.path().join(format!(".model.fedmkt-{live_pid}-00000000000000bb.tmp"));
    std::fs::write(&live, "in use").unwrap();
    assert_success(&run("import-gguf", [&s(&testdata("models/tiny-llama.gguf")), "--out", &s(&out)]));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!stale_folder.exists(), "the dead run's folder was left");
    assert!(live.exists(), "a live process's temporary was removed");
    assert!(out.join("config.json").is_file());
}

/// A file a user put inside an earlier output folder is theirs: the rerun refuses (exit 2),
/// before any work, and leaves the folder as it was: an adapter folder, a model folder (a
/// user's subfolder), a checkpoint folder that `--resume` would finish and remove.
#[test]
fn a_file_the_user_put_inside_an_output_folder_stops_the_rerun() {
    let dir = tempdir();
    let (model, data) = (testdata("models/tiny-llama"), testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"));
    let out = dir.path().join("adapter");
    assert_success(&distill(&model, &data, &out));
    std::fs::write(out.join("NOTES.txt"), "why this run matters").unwrap();
    let before = snapshot(dir.path());
    assert_bad_input(&distill(&model, &data, &out), &["adapter", "holds 'NOTES.txt'", "did not write"]);
    assert_eq!(snapshot(dir.path()), before, "the refused rerun changed the folder");

    let gguf = testdata("models/tiny-llama.gguf");
    let imported = dir.path().join("model");
    assert_success(&run("import-gguf", [&s(&gguf), "--out", &s(&imported)]));
    std::fs::create_dir(imported.join("my-notes")).unwrap();
    assert_bad_input(&run("import-gguf", [&s(&gguf), "--out", &s(&imported)]), &["holds 'my-notes'"]);
    assert!(imported.join("my-notes").is_dir());

    let resumed = dir.path().join("resumed");
    let args = |extra: &[&str]| {
        let base = ["--model", &s(&model), "--data", &s(&data), "--lr", "1e-2", "--epochs", "2", "--out", &s(&resumed)];
        base.iter().map(|a| a.to_string()).chain(extra.iter().map(|a| a.to_string())).collect::<Vec<_>>()
    };
    assert_success(&run("distill", args(&["--max-steps", "1"])));
    let checkpoint = fedmkt::train::checkpoint::checkpoint_dir(&resumed);
    std::fs::write(checkpoint.join("mine.txt"), "kept").unwrap();
    assert_bad_input(&run("distill", args(&["--resume"])), &["holds 'mine.txt'"]);
    assert!(checkpoint.join("mine.txt").is_file() && !resumed.exists(), "refused before any work");
}

/// `prepare-data --out` goes through the same claim: not into a folder holding a user's file
/// or its own source, and a rerun into its own earlier splits is fine.
#[test]
fn prepare_data_writes_only_into_a_folder_of_its_own() {
    let dir = tempdir();
    let source = dir.path().join("olmo");
    assert!(std::process::Command::new("cp")
        .args(["-r", &s(&testdata("data/olmo")), &s(&source)])
        .status()
        .unwrap()
        .success());
    let prepare = |out: &Path| {
        run("prepare-data", ["--task", "arc-easy", "--source", &s(&source), "--clients", "2", "--out", &s(out)])
    };
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.tex"), "years of work").unwrap();
    let before = snapshot(dir.path());
    assert_bad_input(&prepare(&mine), &["mine", "holds 'thesis.tex'"]);
    assert_bad_input(&prepare(&source), &["holds the input"]);
    assert_eq!(snapshot(dir.path()), before, "a refused run changed files");
    let splits = dir.path().join("splits");
    assert_success(&prepare(&splits));
    assert_success(&prepare(&splits));
}

/// An output that cannot be written is refused when it is claimed, before any work: a path
/// under a file, a file path with a trailing '/', and a FIFO (whose marker check would block).
#[test]
fn an_unwritable_output_is_refused_before_any_work() {
    let dir = tempdir();
    let (model, data) = (testdata("models/tiny-llama"), testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"));
    let file = dir.path().join("plain.txt");
    std::fs::write(&file, "mine").unwrap();
    let infer = |out: &str| run("infer-logits", ["--model", &s(&model), "--input", &s(&data), "--out", out]);
    assert_bad_input(&infer(&s(&file.join("x.parquet"))), &["x.parquet", "is not a folder"]);
    assert_bad_input(&infer(&format!("{}/", s(&dir.path().join("k.parquet")))), &["trailing '/'"]);
    let fifo = dir.path().join("fifo.parquet");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    assert_bad_input(&infer(&s(&fifo)), &["fifo.parquet", "not a regular file"]);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "nothing written: {names:?}");
}

/// `vocab-map` killed between its two renames leaves its `.map` in place and its Parquet
/// under a temporary name: the rerun recognises the pair as its own and completes it (every
/// later run refused, exit 2, before).
#[test]
fn a_vocab_map_killed_between_its_renames_is_completed_by_the_rerun() {
    let dir = tempdir();
    let tokenizer = s(&testdata("models/tiny-llama/tokenizer.json"));
    let table = dir.path().join("map.parquet");
    let vocab_map = || run("vocab-map", ["--from", &tokenizer, "--to", &tokenizer, "--out", &s(&table)]);
    assert_success(&vocab_map());
    let dead_pid = dead_pid();
    let staged = dir.path().join(format!(".map.parquet.fedmkt-{dead_pid}-00000000000000cc.tmp"));
    std::fs::rename(&table, &staged).unwrap();
    assert_success(&vocab_map());
    assert!(table.is_file() && dir.path().join("map.map").is_file() && !staged.exists());
}
