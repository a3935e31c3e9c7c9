//! File plumbing shared by every tool: Parquet with provenance, content hashes, and the
//! one-output shorthands of [`crate::output::Commit`] (where and how a tool writes: there).
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::{Array, RecordBatch};
use arrow_schema::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::cli::bad_input;
use crate::output::{Commit, Kind};

pub use crate::formats::META_PREFIX;

/// Provenance written into every Parquet file's key-value metadata (see FORMATS.md).
///
/// `inputs` maps a role (`dataset`, `tokenizer`, `model`, …) to the content hash of the input
/// that played it, so a later stage can refuse files that do not belong together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    pub format: String,
    pub format_version: u32,
    pub tool: String,
    pub inputs: BTreeMap<String, String>,
    pub extra: BTreeMap<String, String>,
}

impl Provenance {
    pub fn new(format: &str, format_version: u32, tool: &str) -> Self {
        Provenance {
            format: format.into(),
            format_version,
            tool: format!("{tool} {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        }
    }

    pub fn input(mut self, role: &str, hash: String) -> Self {
        self.inputs.insert(role.into(), hash);
        self
    }

    pub fn extra(mut self, key: &str, value: impl ToString) -> Self {
        self.extra.insert(key.into(), value.to_string());
        self
    }

    fn to_key_values(&self) -> Vec<KeyValue> {
        let mut kv = vec![
            KeyValue::new(format!("{META_PREFIX}format"), self.format.clone()),
            KeyValue::new(format!("{META_PREFIX}format_version"), self.format_version.to_string()),
            KeyValue::new(format!("{META_PREFIX}tool"), self.tool.clone()),
        ];
        kv.extend(self.inputs.iter().map(|(k, v)| KeyValue::new(format!("{META_PREFIX}input.{k}"), v.clone())));
        kv.extend(self.extra.iter().map(|(k, v)| KeyValue::new(format!("{META_PREFIX}{k}"), v.clone())));
        kv
    }

    fn from_key_values(path: &Path, kv: &[KeyValue]) -> Result<Self> {
        let mut p = Provenance::default();
        for entry in kv {
            let Some(key) = entry.key.strip_prefix(META_PREFIX) else { continue };
            let value = entry.value.clone().unwrap_or_default();
            match key {
                "format" => p.format = value,
                "format_version" => {
                    p.format_version = value.parse().map_err(|_| bad_input(path, "format_version is not a number"))?
                }
                "tool" => p.tool = value,
                _ => match key.strip_prefix("input.") {
                    Some(role) => drop(p.inputs.insert(role.into(), value)),
                    None => drop(p.extra.insert(key.into(), value)),
                },
            }
        }
        Ok(p)
    }
}

/// Content hash of a file, as recorded in provenance: `sha256:<hex>`.
pub fn file_hash(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| bad_input(path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("{}: read failed", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}

/// Hex SHA-256 of a byte string (used for seeded, language-independent orderings).
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Write one folder as the whole output of a run (model and adapter folders), the same way.
pub fn write_folder(dir: &Path, kind: Kind, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut commit = Commit::new();
    commit.folder(dir, kind, fill)?;
    commit.finish()
}

/// Write record batches (all of `schema`) as one Parquet file with provenance, atomically.
pub fn write_parquet(path: &Path, schema: Arc<Schema>, batches: &[RecordBatch], provenance: &Provenance) -> Result<()> {
    let mut commit = Commit::new();
    stage_parquet(&mut commit, path, schema, batches, provenance)?;
    commit.finish()
}

/// Stage record batches as one Parquet file of a multi-file output (see [`Commit`]).
pub fn stage_parquet(
    commit: &mut Commit,
    path: &Path,
    schema: Arc<Schema>,
    batches: &[RecordBatch],
    provenance: &Provenance,
) -> Result<()> {
    stage_parquet_stream(commit, path, schema, provenance, |sink| batches.iter().try_for_each(sink))
}

/// Rows per Parquet row group when streaming: bounds the writer's memory, whatever the data size.
const STREAM_ROW_GROUP: usize = 256;

/// Stream record batches into one Parquet file, atomically: `produce` hands each batch to
/// the sink as soon as it exists, so memory does not grow with the data set.
pub fn write_parquet_stream(
    path: &Path,
    schema: Arc<Schema>,
    provenance: &Provenance,
    produce: impl FnOnce(&mut dyn FnMut(&RecordBatch) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let mut commit = Commit::new();
    stage_parquet_stream(&mut commit, path, schema, provenance, produce)?;
    commit.finish()
}

fn stage_parquet_stream(
    commit: &mut Commit,
    path: &Path,
    schema: Arc<Schema>,
    provenance: &Provenance,
    produce: impl FnOnce(&mut dyn FnMut(&RecordBatch) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_size(STREAM_ROW_GROUP)
        .set_key_value_metadata(Some(provenance.to_key_values()))
        .build();
    // The provenance goes into the embedded Arrow schema as well as the footer: pyarrow shows
    // the former as `table.schema.metadata` and writes it back to the footer on a round trip.
    let metadata = provenance.to_key_values().into_iter().map(|kv| (kv.key, kv.value.unwrap_or_default())).collect();
    let schema = Arc::new(schema.as_ref().clone().with_metadata(metadata));
    let kind = Kind::parquet(&provenance.format);
    commit.file(path, kind, |file| {
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .with_context(|| format!("{}: cannot write Parquet", path.display()))?;
        produce(&mut |batch| {
            let batch = batch.clone().with_schema(schema.clone())?;
            writer.write(&batch).with_context(|| format!("{}: cannot write Parquet", path.display()))
        })?;
        writer.close().with_context(|| format!("{}: cannot write Parquet", path.display()))?;
        Ok(())
    })
}

/// A Parquet file read whole into memory: its batches and the provenance it carries.
pub struct ParquetTable {
    pub path: PathBuf,
    /// The Arrow schema as stored in the file, with its metadata.
    pub schema: arrow_schema::SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub provenance: Provenance,
}

/// Read a Parquet file we (or a compatible program) wrote, checking its format name.
pub fn read_parquet(path: &Path, expected_format: &str) -> Result<ParquetTable> {
    read_parquet_of(path, &[expected_format])
}

/// [`read_parquet`] of a file that may be any of several formats (e.g. a teacher: `selected`
/// or a whole `knowledge` set); none: any fedmkt format.
pub fn read_parquet_of(path: &Path, formats: &[&str]) -> Result<ParquetTable> {
    crate::cli::contain_panics(|| read_checked(path, formats)).unwrap_or_else(|| {
        Err(bad_input(path, "not a readable Parquet file (the Parquet reader failed on its corrupt bytes)"))
    })
}

fn read_checked(path: &Path, formats: &[&str]) -> Result<ParquetTable> {
    let file = File::open(path).map_err(|e| bad_input(path, format!("cannot open: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad_input(path, format!("not a readable Parquet file ({e})")))?;
    let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let provenance = Provenance::from_key_values(path, &kv)?;
    if formats.is_empty() && provenance.format.is_empty() {
        return Err(bad_input(path, "is not a fedmkt Parquet file (no fedmkt.format)"));
    }
    if !formats.is_empty() && !formats.contains(&provenance.format.as_str()) {
        let found = if provenance.format.is_empty() { "none".to_string() } else { format!("'{}'", provenance.format) };
        let expected = formats.iter().map(|f| format!("'{f}'")).collect::<Vec<_>>().join(" or ");
        return Err(bad_input(path, format!("expected a {expected} file (fedmkt.format), found {found}")));
    }
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| bad_input(path, format!("cannot read Parquet ({e})")))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_input(path, format!("cannot read Parquet ({e})")))?;
    Ok(ParquetTable { path: path.to_path_buf(), schema, batches, provenance })
}

impl ParquetTable {
    /// Refuse a null anywhere in these columns (nested lists included): no reader of ours
    /// has a meaning for one, and Arrow reads a null as whatever bytes sit under it.
    pub fn refuse_nulls(&self, columns: &[&str]) -> Result<()> {
        fn any_null(data: &arrow_array::ArrayRef) -> bool {
            fn walk(data: &arrow_data::ArrayData) -> bool {
                data.null_count() > 0 || data.child_data().iter().any(walk)
            }
            walk(&data.to_data())
        }
        for batch in &self.batches {
            for name in columns {
                if batch.column_by_name(name).is_some_and(any_null) {
                    return Err(bad_input(&self.path, format!("column '{name}' holds a null")));
                }
            }
        }
        Ok(())
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// One column of every batch, downcast to its Arrow array type, or a bad-input error
    /// naming the file and column.
    pub fn column<A: Array + Clone + 'static>(&self, name: &str) -> Result<Vec<A>> {
        self.batches
            .iter()
            .map(|batch| {
                let col = batch
                    .column_by_name(name)
                    .ok_or_else(|| bad_input(&self.path, format!("missing column '{name}'")))?;
                col.as_any().downcast_ref::<A>().cloned().ok_or_else(|| {
                    bad_input(&self.path, format!("column '{name}' has type {}, not the expected one", col.data_type()))
                })
            })
            .collect()
    }

    /// Every value of a primitive column, all batches in order (nulls read as the type's default).
    pub fn values<T: arrow_array::types::ArrowPrimitiveType>(&self, name: &str) -> Result<Vec<T::Native>> {
        let columns = self.column::<arrow_array::PrimitiveArray<T>>(name)?;
        Ok(columns.iter().flat_map(|a| a.values().to_vec()).collect())
    }

    /// Every value of a nullable primitive column, all batches in order.
    pub fn optional_values<T: arrow_array::types::ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<Vec<Option<T::Native>>> {
        let columns = self.column::<arrow_array::PrimitiveArray<T>>(name)?;
        Ok(columns.iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect())
    }

    /// Every value of a string column, all batches in order (nulls read as "").
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let columns = self.column::<arrow_array::StringArray>(name)?;
        Ok(columns
            .iter()
            .flat_map(|a| a.iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>())
            .collect())
    }

    /// The content hash this file records for an input role, or a bad-input error.
    pub fn input_hash(&self, role: &str) -> Result<&str> {
        self.provenance
            .inputs
            .get(role)
            .map(String::as_str)
            .ok_or_else(|| bad_input(&self.path, format!("no provenance for input '{role}' (fedmkt.input.{role})")))
    }
}
