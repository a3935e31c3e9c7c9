//! A run's checkpoint (`distill --checkpoint-every N`, `--max-steps`, `--resume`): the
//! adapter, the optimiser's moments, the dropout stream's position and the log so far, in
//! `<out>.checkpoint/`, beside the settings a resumed run must share.
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::log::LogRow;
use super::optimizer::AdamW;
use crate::cli::bad_input;
use crate::io;
use crate::model;
use crate::output::{self, Kind};

/// Where a run stands, beside the tensors of its checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointState {
    /// The run's settings and input hashes ([`DistillOptions::settings`]): a resumed run must match.
    #[serde(default)]
    settings: std::collections::BTreeMap<String, String>,
    steps_done: usize,
    adam_t: i32,
    /// The dropout stream's word position (decimal; u128).
    dropout_position: Option<String>,
    log: Vec<LogRow>,
}

/// The checkpoint folder of a run: beside `out`, named `<out>.checkpoint`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "adapter".into());
    out.with_file_name(format!("{name}.checkpoint"))
}

/// A periodic checkpoint is first staged beside the real one and promoted only once its
/// parameters have given a finite loss: a run that diverges keeps the last *good* checkpoint,
/// not the parameters that blew up.
pub(super) struct Checkpoints {
    pub(super) dir: PathBuf,
    staged: PathBuf,
}

impl Checkpoints {
    pub(super) fn new(out: &Path) -> Checkpoints {
        let dir = checkpoint_dir(out);
        let staged = dir.with_extension("checkpoint.staged");
        Checkpoints { dir, staged }
    }

    pub(super) fn stage(
        &self,
        adam: &AdamW,
        mode: &crate::model::lora::LoraMode,
        log: &[LogRow],
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        save_checkpoint(&self.staged, adam, mode, log, settings)
    }

    /// Both folders are this run's to write (checked before any work, see [`output::claim`]).
    pub(super) fn outputs(&self) -> [(&Path, Kind); 2] {
        [(&self.dir, Kind::Checkpoint), (&self.staged, Kind::Checkpoint)]
    }

    /// The staged parameters gave a finite loss: they become the checkpoint.
    pub(super) fn promote(&self) -> Result<()> {
        if self.staged.is_dir() {
            output::replace_folder(&self.staged, &self.dir, Kind::Checkpoint)?;
        }
        Ok(())
    }

    pub(super) fn discard_staged(&self) -> Result<()> {
        output::remove_own(&self.staged, Kind::Checkpoint)
    }

    /// The run finished and wrote its adapter: no checkpoint is needed any more.
    pub(super) fn remove(&self) -> Result<()> {
        self.discard_staged()?;
        output::remove_own(&self.dir, Kind::Checkpoint)
    }
}

pub(super) fn save_checkpoint(
    dir: &Path,
    adam: &AdamW,
    mode: &crate::model::lora::LoraMode,
    log: &[LogRow],
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let state = CheckpointState {
        settings: settings.clone(),
        steps_done: log.len(),
        adam_t: adam.t,
        dropout_position: mode.position().map(|p| p.to_string()),
        log: log.to_vec(),
    };
    io::write_folder(dir, Kind::Checkpoint, |tmp| {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (i, (key, var)) in adam.vars.iter().enumerate() {
            tensors.extend([
                (format!("param:{key}"), var.as_tensor().clone()),
                (format!("m:{key}"), adam.m[i].clone()),
                (format!("v:{key}"), adam.v[i].clone()),
            ]);
        }
        candle_core::safetensors::save(&tensors.into_iter().collect(), tmp.join("state.safetensors"))?;
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&state)?)?;
        Ok(())
    })
}

/// Restore adapter, moments and dropout position; returns the log so far.
pub(super) fn load_checkpoint(
    dir: &Path,
    adam: &mut AdamW,
    mode: &crate::model::lora::LoraMode,
    device: &Device,
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<LogRow>> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| bad_input(&state_path, format!("cannot read: {e}")))?;
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| bad_input(&state_path, format!("not a checkpoint ({e})")))?;
    // Both ways: a setting or input this run lacks (a dropped --teacher or --data) differs too.
    let keys: std::collections::BTreeSet<&String> = settings.keys().chain(state.settings.keys()).collect();
    if let Some(key) = keys.into_iter().find(|k| settings.get(*k) != state.settings.get(*k)) {
        let quoted = |v: Option<&String>| v.map_or("nothing".to_string(), |v| format!("'{v}'"));
        return Err(bad_input(
            &state_path,
            format!(
                "was made with {key} {}, this run has {}; --resume needs the same settings and inputs",
                quoted(state.settings.get(key)),
                quoted(settings.get(key))
            ),
        ));
    }
    let tensors_path = dir.join("state.safetensors");
    let tensors = candle_core::safetensors::load(&tensors_path, device)
        .map_err(|e| bad_input(&tensors_path, format!("cannot read ({e})")))?;
    let get = |name: String| {
        tensors
            .get(&name)
            .cloned()
            .ok_or_else(|| bad_input(&tensors_path, format!("no tensor '{name}' (a checkpoint of another adapter?)")))
    };
    for (i, (key, var)) in adam.vars.iter().enumerate() {
        var.set(&get(format!("param:{key}"))?)?;
        adam.m[i] = get(format!("m:{key}"))?;
        adam.v[i] = get(format!("v:{key}"))?;
    }
    adam.t = state.adam_t;
    if let Some(position) = state.dropout_position {
        mode.seek(position.parse().map_err(|_| bad_input(&state_path, "bad dropout_position"))?);
    }
    Ok(state.log)
}

/// The hash of a model's weight files, in order: what its config's hash does not cover.
pub(super) fn weights_hash(model_dir: &Path) -> Result<String> {
    let hashes: Vec<String> =
        model::weight_files(model_dir)?.iter().map(|f| io::file_hash(f)).collect::<Result<_>>()?;
    Ok(format!("sha256:{}", io::sha256_hex(hashes.join(",").as_bytes())))
}
