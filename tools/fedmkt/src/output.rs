//! Where a tool may write, and how its outputs appear.
//!
//! The rules every tool follows (FORMATS.md, "Outputs"):
//! - an output path may hold nothing, an empty folder, or an earlier output of the same kind
//!   that fedmkt wrote (recognised by its marker, see [`Kind`]); anything else is refused with
//!   exit 2 and left untouched. An earlier output folder must hold only the files fedmkt
//!   writes into a folder of its kind ([`Kind::own_files`]): a file or folder a user put
//!   inside it makes the run refuse too, so that replacing the folder loses nothing of theirs;
//! - an output may not be, lie inside, or contain any of the run's inputs (canonical paths);
//! - all outputs of one run are staged under temporary names beside their destinations,
//!   written completely and fsync'd, and only then moved into place ([`Commit`]); an earlier
//!   output is swapped out and removed only after its replacement is in place;
//! - temporary names are `.<name>.fedmkt-<pid>-<random>.tmp`; a later run into the same
//!   place removes those whose process is gone (a run killed with `kill -9`).
use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::{bad_input, bad_usage};

/// What an output is, which says how an earlier one of ours is recognised.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A Parquet file whose footer holds `fedmkt.format` = this name.
    Parquet(String),
    /// A JSON object whose `fedmkt_format` member is this name.
    Json(String),
    /// A Markdown file whose first line is [`MARKDOWN_MARK`].
    Markdown,
    /// The flat `.map` array beside a vocab-map Parquet file (ours when that Parquet is).
    FlatMap,
    /// A PEFT adapter folder whose `adapter_config.json` has `fedmkt_base_config`.
    Adapter,
    /// A model folder whose `config.json` has `fedmkt_source` (import-gguf).
    Model,
    /// A training checkpoint folder whose `state.json` has `steps_done` (distill).
    Checkpoint,
}

/// First line of every Markdown file a tool writes: invisible when rendered, and the mark by
/// which a later run knows the file is its own.
pub const MARKDOWN_MARK: &str = "<!-- written by fedmkt -->";

impl Kind {
    pub fn parquet(format: &str) -> Kind {
        Kind::Parquet(format.into())
    }

    pub fn json(format: &str) -> Kind {
        Kind::Json(format.into())
    }

    fn is_folder(&self) -> bool {
        matches!(self, Kind::Adapter | Kind::Model | Kind::Checkpoint)
    }

    /// The names of the files fedmkt writes into a folder of this kind (none for file kinds).
    fn own_files(&self) -> &'static [&'static str] {
        match self {
            Kind::Adapter => &["adapter_config.json", "adapter_model.safetensors", "training_log.parquet"],
            Kind::Model => &["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"],
            Kind::Checkpoint => &["state.json", "state.safetensors"],
            _ => &[],
        }
    }

    /// The first entry of folder `path` that fedmkt did not write there, if any.
    fn foreign_entry(&self, path: &Path) -> Option<String> {
        let entries = std::fs::read_dir(path).ok()?;
        entries.flatten().find_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = entry.file_type().is_ok_and(|t| t.is_file()) && self.own_files().contains(&name.as_str());
            (!ours).then_some(name)
        })
    }

    fn describe(&self) -> String {
        match self {
            Kind::Parquet(format) => format!("a '{format}' Parquet file"),
            Kind::Json(format) => format!("a '{format}' JSON file"),
            Kind::Markdown => "a Markdown file".into(),
            Kind::FlatMap => "the .map of a vocab-map Parquet file".into(),
            Kind::Adapter => "an adapter folder".into(),
            Kind::Model => "a model folder".into(),
            Kind::Checkpoint => "a checkpoint folder".into(),
        }
    }

    /// Whether `path` (which exists) is an earlier output of this kind that fedmkt wrote.
    fn recognises(&self, path: &Path) -> bool {
        match self {
            Kind::Parquet(format) => parquet_format(path).as_deref() == Some(format.as_str()),
            Kind::Json(format) => {
                json_member(path, "fedmkt_format").as_ref().and_then(Value::as_str) == Some(format.as_str())
            }
            Kind::Markdown => std::fs::read_to_string(path).is_ok_and(|t| t.lines().next() == Some(MARKDOWN_MARK)),
            Kind::FlatMap => flat_map_is_ours(path),
            Kind::Adapter => json_member(&path.join("adapter_config.json"), "fedmkt_base_config").is_some(),
            Kind::Model => json_member(&path.join("config.json"), "fedmkt_source").is_some(),
            Kind::Checkpoint => json_member(&path.join("state.json"), "steps_done").is_some(),
        }
    }
}

fn parquet_format(path: &Path) -> Option<String> {
    crate::cli::contain_panics(|| parquet_footer_format(path)).flatten()
}

fn parquet_footer_format(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).ok()?;
    let kv = parquet::file::reader::FileReader::metadata(&reader).file_metadata().key_value_metadata()?.clone();
    kv.into_iter().find(|e| e.key == format!("{}format", crate::formats::META_PREFIX)).and_then(|e| e.value)
}

fn json_member(path: &Path, key: &str) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<Value>(&text).ok()?.get(key).cloned()
}

/// The `.map` is ours when the vocab-map Parquet beside it is, or when a run of ours that
/// was staging that Parquet died before moving it into place (its temporary file remains).
fn flat_map_is_ours(path: &Path) -> bool {
    let table = path.with_extension("parquet");
    let vocab_map = Kind::parquet(crate::formats::VOCAB_MAP_FORMAT);
    table.is_file() && vocab_map.recognises(&table)
        || own_temporaries(&table).iter().any(|(tmp, _)| tmp.is_file() && vocab_map.recognises(tmp))
}

/// Check, before any work, that a run may write `outputs`: each is absent, an empty folder
/// (for folder kinds) or an earlier output of its kind; none is, lies inside or contains an
/// input; no two are the same path. Removes the stale temporaries of each output.
pub fn claim(outputs: &[(&Path, Kind)], inputs: &[&Path]) -> Result<()> {
    let canonical_inputs: Vec<(PathBuf, &Path)> =
        inputs.iter().filter(|p| p.exists()).map(|p| Ok((canonical(p)?, *p))).collect::<Result<_>>()?;
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    for (out, kind) in outputs {
        let out = *out;
        let target = canonical(out)?;
        if let Some((_, first)) = seen.iter().find(|(c, _)| *c == target) {
            return Err(bad_usage(format!(
                "{}: written twice in one run (also as {})",
                out.display(),
                first.display()
            )));
        }
        for (input, given) in &canonical_inputs {
            if target == *input || target.starts_with(input) || input.starts_with(&target) {
                return Err(bad_input(
                    out,
                    format!("overlaps the input {}; choose another output path", given.display()),
                ));
            }
        }
        check_replaceable(out, kind)?;
        check_writable(out, kind)?;
        seen.push((target, out));
    }
    // Only once every output is known to be ours: a `.map` is recognised by its Parquet's
    // staged temporary when a killed run left the pair half-moved.
    for (out, _) in outputs {
        remove_stale_temporaries(out)?;
    }
    Ok(())
}

/// A folder a tool fills with several outputs of `kind` (`prepare-data`'s splits): absent, or
/// holding nothing but earlier outputs of that kind (and temporaries of ours), and holding no
/// input. The outputs themselves are then claimed one by one ([`claim`]).
pub fn claim_folder(dir: &Path, kind: &Kind, inputs: &[&Path]) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return Ok(()) };
    if !meta.is_dir() {
        return Err(bad_input(dir, "is not a folder; give a folder for the outputs"));
    }
    let target = canonical(dir)?;
    for input in inputs.iter().filter(|p| p.exists()) {
        if canonical(input)?.starts_with(&target) {
            return Err(bad_input(dir, format!("holds the input {}; choose another output folder", input.display())));
        }
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?.flatten() {
        let (path, name) = (entry.path(), entry.file_name().to_string_lossy().into_owned());
        let temporary = name.starts_with('.') && name.contains(TEMP_TAG) && name.ends_with(TEMP_SUFFIX);
        if !(temporary || entry.file_type().is_ok_and(|t| t.is_file()) && kind.recognises(&path)) {
            return Err(bad_input(
                dir,
                format!("holds '{name}', not {} that fedmkt wrote; choose an empty or new folder", kind.describe()),
            ));
        }
    }
    Ok(())
}

/// The output can be written: a file output's path does not end in '/', and its nearest
/// existing ancestor is a folder this process may write into. Checked when the output is
/// claimed, before any work (a read-only folder was found only after a training run).
fn check_writable(path: &Path, kind: &Kind) -> Result<()> {
    if !kind.is_folder() && path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(bad_usage(format!("{}: names a folder (trailing '/'); give a file path", path.display())));
    }
    let absolute = std::path::absolute(path).with_context(|| format!("{}: cannot resolve", path.display()))?;
    let mut ancestor = parent_dir(&absolute);
    while std::fs::symlink_metadata(&ancestor).is_err() {
        ancestor = parent_dir(&ancestor);
    }
    if !ancestor.is_dir() {
        return Err(bad_input(path, format!("cannot be written: {} is not a folder", ancestor.display())));
    }
    if !may_write(&ancestor) {
        return Err(bad_input(path, format!("cannot be written: {} is not writable", ancestor.display())));
    }
    Ok(())
}

#[cfg(unix)]
fn may_write(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: a valid NUL-terminated path; access only inspects permissions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(not(unix))]
fn may_write(dir: &Path) -> bool {
    !std::fs::metadata(dir).is_ok_and(|m| m.permissions().readonly())
}

/// `path` holds nothing, an empty folder of a folder kind, or an earlier output of `kind`.
fn check_replaceable(path: &Path, kind: &Kind) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let refuse = |what: &str| {
        Err(bad_input(path, format!("{what}, not {} that fedmkt wrote; refusing to replace it", kind.describe())))
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link");
    }
    if !meta.is_dir() && !meta.is_file() {
        // A FIFO or device: opening it to look for our marker could block forever.
        return refuse("is not a regular file");
    }
    match (meta.is_dir(), kind.is_folder()) {
        (true, true) if is_empty_dir(path) => Ok(()),
        (true, true) if kind.recognises(path) => match kind.foreign_entry(path) {
            None => Ok(()),
            Some(name) => Err(bad_input(
                path,
                format!("holds '{name}', which fedmkt did not write there; move it out, or choose another output path"),
            )),
        },
        (true, _) => refuse("is a folder"),
        (false, true) => refuse("is a file"),
        (false, false) if kind.recognises(path) => Ok(()),
        (false, false) => refuse("exists"),
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// The absolute path with symbolic links resolved, also for a path that does not exist yet
/// (its longest existing ancestor resolved, the rest appended).
fn canonical(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).with_context(|| format!("{}: cannot resolve", path.display()))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else { break };
        rest.push(name.to_os_string());
        existing = parent;
    }
    let mut resolved = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.into_iter().rev() {
        match Path::new(&name).components().next() {
            Some(Component::ParentDir) => drop(resolved.pop()),
            Some(Component::CurDir) => {}
            _ => resolved.push(name),
        }
    }
    Ok(resolved)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into())
}

const TEMP_TAG: &str = "fedmkt-";
const TEMP_SUFFIX: &str = ".tmp";

/// A fresh temporary name beside `dest`, recognisable as ours and naming our process.
fn temporary_name(dest: &Path) -> PathBuf {
    let random: u64 = rand::random();
    parent_dir(dest).join(format!(".{}.{TEMP_TAG}{}-{random:016x}{TEMP_SUFFIX}", file_name(dest), std::process::id()))
}

/// Temporaries of `dest` that some run of ours left beside it (any process), each with the
/// id of the process that made it.
fn own_temporaries(dest: &Path) -> Vec<(PathBuf, u32)> {
    let prefix = format!(".{}.{TEMP_TAG}", file_name(dest));
    let Ok(entries) = std::fs::read_dir(parent_dir(dest)) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid =
                name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(TEMP_SUFFIX)).and_then(pid_and_random)?;
            Some((e.path(), pid))
        })
        .collect()
}

/// The process id of `<pid>-<16 hex digits>`, the variable part of a temporary's name.
fn pid_and_random(text: &str) -> Option<u32> {
    let (pid, random) = text.split_once('-')?;
    (random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some(pid.parse().ok()?)
}

/// Whether a process with this id exists (signal 0 probes without sending anything).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Without a way to ask, every temporary is taken to belong to a running process and kept.
#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Remove the temporaries of `dest` whose process is gone: a killed run of ours left them.
fn remove_stale_temporaries(dest: &Path) -> Result<()> {
    for (tmp, pid) in own_temporaries(dest) {
        if pid != std::process::id() && !process_alive(pid) {
            remove_any(&tmp)?;
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<()> {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    result.with_context(|| format!("{}: cannot remove", path.display()))
}

struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    kind: Kind,
}

/// The outputs of one run: each staged complete under a temporary name, then all moved into
/// place by [`Commit::finish`], in the order staged (stage the file `make` waits for last).
/// Dropped without `finish`, it removes what it staged.
#[derive(Default)]
pub struct Commit {
    staged: Vec<Staged>,
}

impl Commit {
    pub fn new() -> Commit {
        Commit::default()
    }

    /// Stage a file: `fill` writes it; it is fsync'd and made readable to all.
    pub fn file(&mut self, dest: &Path, kind: Kind, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
        let tmp = self.reserve(dest, kind)?;
        let mut file = File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        fill(&mut file)?;
        file.flush()?;
        file.sync_all().with_context(|| format!("{}: cannot sync", tmp.display()))?;
        set_mode(&tmp, 0o644)
    }

    /// Stage a folder: `fill` populates it; every file in it and the folder are fsync'd.
    pub fn folder(&mut self, dest: &Path, kind: Kind, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let tmp = self.reserve(dest, kind)?;
        std::fs::create_dir(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        fill(&tmp)?;
        sync_tree(&tmp)
    }

    fn reserve(&mut self, dest: &Path, kind: Kind) -> Result<PathBuf> {
        let dir = parent_dir(dest);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
        let tmp = temporary_name(dest);
        self.staged.push(Staged { tmp: tmp.clone(), dest: dest.to_path_buf(), kind });
        Ok(tmp)
    }

    /// Move every staged output into place. Each destination is checked again (absent, or
    /// an earlier output of its kind) before anything moves; an earlier output is swapped out
    /// and removed only once its replacement is in place.
    pub fn finish(mut self) -> Result<()> {
        for item in &self.staged {
            check_replaceable(&item.dest, &item.kind)?;
        }
        for item in std::mem::take(&mut self.staged) {
            move_into_place(&item)?;
            sync_dir(&parent_dir(&item.dest))?;
        }
        Ok(())
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        for item in &self.staged {
            let _ = remove_any(&item.tmp);
        }
    }
}

/// Move a complete folder of ours (`src`, not a temporary) to `dest`, which must be absent
/// or an earlier folder of `kind`; the old one is removed once the new one is in place.
pub fn replace_folder(src: &Path, dest: &Path, kind: Kind) -> Result<()> {
    check_replaceable(dest, &kind)?;
    let tmp = temporary_name(dest);
    std::fs::rename(src, &tmp).with_context(|| format!("{}: cannot move", src.display()))?;
    move_into_place(&Staged { tmp, dest: dest.to_path_buf(), kind })?;
    sync_dir(&parent_dir(dest))
}

/// Remove `path` if it is an output of `kind` that fedmkt wrote (or an empty folder); refuse
/// anything else.
pub fn remove_own(path: &Path, kind: Kind) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    check_replaceable(path, &kind)?;
    remove_any(path)
}

fn move_into_place(item: &Staged) -> Result<()> {
    let rename_error = |e: std::io::Error| anyhow::anyhow!("{}: cannot move into place: {e}", item.dest.display());
    if !(item.kind.is_folder() && item.dest.is_dir()) {
        return std::fs::rename(&item.tmp, &item.dest).map_err(rename_error);
    }
    // A folder cannot be renamed over a non-empty one: swap the two, then remove the old one,
    // which now sits under the temporary name.
    exchange(&item.tmp, &item.dest).map_err(rename_error)?;
    remove_any(&item.tmp)
}

/// Swap two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`); elsewhere, or on a file
/// system without it, the old one is first renamed aside.
fn exchange(new: &Path, old: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths");
        let (a, b) = (c(new), c(old));
        // SAFETY: both are valid NUL-terminated paths relative to the current directory.
        let rc =
            unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(err);
        }
    }
    let aside = temporary_name(old);
    std::fs::rename(old, &aside)?;
    std::fs::rename(new, old)?;
    std::fs::rename(&aside, new)
}

fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)?.sync_all().with_context(|| format!("{}: cannot sync", path.display()))?;
            set_mode(&path, 0o644)?;
        }
    }
    set_mode(dir, 0o755)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("{}: cannot sync folder", dir.display()))
}

/// Outputs are for everyone to read, whatever the process's umask made of the temporaries.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("{}: cannot set permissions", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_file(dest: &Path, kind: Kind, text: &str) -> Result<()> {
        let mut commit = Commit::new();
        commit.file(dest, kind, |f| Ok(f.write_all(text.as_bytes())?))?;
        commit.finish()
    }

    #[test]
    fn a_foreign_file_or_folder_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("notes.md");
        std::fs::write(&foreign, "my notes\n").unwrap();
        assert!(claim(&[(&foreign, Kind::Markdown)], &[]).is_err());
        assert!(commit_file(&foreign, Kind::Markdown, "x").is_err());
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "my notes\n");
        let folder = dir.path().join("mine");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("keep.txt"), "k").unwrap();
        assert!(claim(&[(&folder, Kind::Adapter)], &[]).is_err());
        assert!(claim(&[(dir.path(), Kind::Adapter)], &[]).is_err());
        assert!(folder.join("keep.txt").is_file());
    }

    #[test]
    fn an_earlier_output_of_ours_is_replaced_by_a_swap() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("report.md");
        commit_file(&md, Kind::Markdown, &format!("{MARKDOWN_MARK}\none\n")).unwrap();
        commit_file(&md, Kind::Markdown, &format!("{MARKDOWN_MARK}\ntwo\n")).unwrap();
        assert!(std::fs::read_to_string(&md).unwrap().ends_with("two\n"));
        let adapter = dir.path().join("adapter");
        for value in ["1", "2"] {
            let mut commit = Commit::new();
            commit
                .folder(&adapter, Kind::Adapter, |tmp| {
                    Ok(std::fs::write(tmp.join("adapter_config.json"), format!("{{\"fedmkt_base_config\": {value}}}"))?)
                })
                .unwrap();
            commit.finish().unwrap();
        }
        assert_eq!(json_member(&adapter.join("adapter_config.json"), "fedmkt_base_config"), Some(2.into()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "only the two outputs remain");
    }

    #[test]
    fn outputs_may_not_overlap_inputs_or_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir(&model).unwrap();
        let data = model.join("data.parquet");
        std::fs::write(&data, "x").unwrap();
        let inside = model.join("sub/../adapter");
        assert!(claim(&[(&inside, Kind::Adapter)], &[&model]).is_err());
        assert!(claim(&[(&data, Kind::parquet("tokens"))], &[&data]).is_err());
        assert!(claim(&[(dir.path(), Kind::Adapter)], &[&data]).is_err());
        let out = dir.path().join("out.parquet");
        assert!(
            claim(&[(&out, Kind::parquet("a")), (&dir.path().join("./out.parquet"), Kind::json("b"))], &[]).is_err()
        );
        assert!(claim(&[(&out, Kind::parquet("a"))], &[&model]).is_ok());
    }

    #[test]
    fn stale_temporaries_of_a_dead_run_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.parquet");
        let dead = dir.path().join(format!(".x.parquet.{TEMP_TAG}{}-{:016x}{TEMP_SUFFIX}", i32::MAX as u32, 7));
        let live = dir.path().join(format!(".x.parquet.{TEMP_TAG}{}-{:016x}{TEMP_SUFFIX}", std::process::id(), 8));
        let unrelated = dir.path().join(".x.parquet.other.tmp");
        for p in [&dead, &live, &unrelated] {
            std::fs::write(p, "t").unwrap();
        }
        claim(&[(&dest, Kind::parquet("tokens"))], &[]).unwrap();
        assert!(!dead.exists() && live.exists() && unrelated.exists());
    }

    #[test]
    fn a_failed_run_leaves_nothing_staged() {
        let dir = tempfile::tempdir().unwrap();
        let mut commit = Commit::new();
        commit.file(&dir.path().join("a.json"), Kind::json("x"), |f| Ok(f.write_all(b"{}")?)).unwrap();
        assert!(commit.file(&dir.path().join("b.json"), Kind::json("x"), |_| anyhow::bail!("boom")).is_err());
        drop(commit);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
