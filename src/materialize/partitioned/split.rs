//! Splitting a query's batches into partition folders and encoding each folder's rows into
//! Parquet, a few encoders per core, while the query still runs.

use super::*;

/// The folder (`a=1/b=x`) of every row of `batch`.
pub fn partition_folders(batch: &RecordBatch, columns: &[(usize, String)]) -> Result<Vec<String>, MaterializeError> {
    let mut folders = vec![String::new(); batch.num_rows()];
    for (index, name) in columns {
        let array = batch.column(*index);
        for (row, folder) in folders.iter_mut().enumerate() {
            let value = if array.is_null(row) {
                NULL_PARTITION.to_string()
            } else {
                array_value_to_string(array, row)?
            };
            if value.contains('/') || value.is_empty() {
                return Err(MaterializeError::Setup(format!(
                    "partition column '{name}' has the value '{value}', which cannot name a folder"
                )));
            }
            if !folder.is_empty() {
                folder.push('/');
            }
            folder.push_str(name);
            folder.push('=');
            folder.push_str(&value);
        }
    }
    Ok(folders)
}

/// The rows of `batch` grouped by partition: rows are compared in arrow's row format and only
/// the first row of each group is formatted into its folder name.
pub(super) fn group_rows(
    batch: &RecordBatch,
    columns: &[(usize, String)],
) -> Result<Vec<(String, Vec<u32>)>, MaterializeError> {
    let arrays: Vec<_> = columns.iter().map(|(index, _)| batch.column(*index).clone()).collect();
    let converter = RowConverter::new(
        arrays
            .iter()
            .map(|array| SortField::new(array.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&arrays)?;
    let mut groups: std::collections::HashMap<datafusion::arrow::row::Row<'_>, Vec<u32>> =
        std::collections::HashMap::new();
    for row in 0..batch.num_rows() {
        groups.entry(rows.row(row)).or_default().push(row as u32);
    }
    let mut named = Vec::with_capacity(groups.len());
    for indices in groups.into_values() {
        let first = batch.slice(indices[0] as usize, 1);
        let folder = partition_folders(&first, columns)?.remove(0);
        named.push((folder, indices));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

/// The encoder task a partition folder goes to (the same one for every batch).
pub(super) fn encoder_of(folder: &str, encoders: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    folder.hash(&mut hasher);
    (hasher.finish() % encoders as u64) as usize
}

/// One splitter task: sends each batch's rows to the encoder of their partition folder;
/// returns the rows it read. It stops early when an encoder has stopped (that encoder reports
/// why).
pub(super) async fn split_partitions(
    mut data: SendableRecordBatchStream,
    layout: Arc<PartitionLayout>,
    senders: Vec<tokio::sync::mpsc::Sender<(String, RecordBatch)>>,
) -> Result<u64, MaterializeError> {
    let mut rows = 0u64;
    while let Some(batch) = data.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows() as u64;
        // The rows gathered by folder in one step, then each folder's rows as a slice.
        let groups = group_rows(&batch, &layout.columns)?;
        let projected = batch.project(&layout.kept)?;
        let gathered = if groups.len() == 1 {
            projected
        } else {
            let order: Vec<u32> = groups.iter().flat_map(|(_, indices)| indices.iter().copied()).collect();
            take_record_batch(&projected, &UInt32Array::from(order))?
        };
        let mut start = 0;
        for (folder, indices) in groups {
            let part = gathered.slice(start, indices.len());
            start += indices.len();
            let encoder = encoder_of(&folder, senders.len());
            if senders[encoder].send((folder, part)).await.is_err() {
                return Ok(rows);
            }
        }
    }
    Ok(rows)
}

/// Parts an encoder holds for one partition before they become a row group.
///
/// A part the splitter sends is a slice of a larger batch, which keeps that whole batch in
/// memory; every [`LOOSE_PARTS`] slices are copied into one batch of their own, so a partition
/// that gets a few rows from each of many batches holds at most that many batches.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) compacted: Vec<RecordBatch>,
    pub(super) loose: Vec<RecordBatch>,
    pub(super) rows: usize,
}

pub(super) const LOOSE_PARTS: usize = 8;

impl Pending {
    fn push(&mut self, part: RecordBatch, schema: &SchemaRef) -> Result<(), MaterializeError> {
        self.rows += part.num_rows();
        self.loose.push(part);
        if self.loose.len() >= LOOSE_PARTS {
            let copied = concat_batches(schema, self.loose.iter())?;
            self.loose.clear();
            self.compacted.push(copied);
        }
        Ok(())
    }

    /// Everything held, as one batch (None when nothing is).
    fn take(&mut self, schema: &SchemaRef) -> Result<Option<RecordBatch>, MaterializeError> {
        if self.rows == 0 {
            return Ok(None);
        }
        let batch = concat_batches(schema, self.compacted.iter().chain(self.loose.iter()))?;
        *self = Pending::default();
        Ok(Some(batch))
    }
}

/// One encoder task: writes the parts it receives into `<staging>/<folder>/data.parquet`,
/// gathering small parts so its writers get full batches however finely the input interleaves
/// the partitions. Returns the folders it wrote and their bytes. On an error it aborts the
/// uploads it still has open.
pub(super) async fn encode_partitions(
    mut parts: tokio::sync::mpsc::Receiver<(String, RecordBatch)>,
    store: Arc<dyn ObjectStore>,
    staging: StorePath,
    file_schema: SchemaRef,
) -> Result<(Vec<String>, u64), MaterializeError> {
    let mut writers: BTreeMap<String, (AsyncArrowWriter<BufWriter>, Pending)> = BTreeMap::new();
    let received = async {
        while let Some((folder, part)) = parts.recv().await {
            if !writers.contains_key(&folder) {
                let object = BufWriter::new(store.clone(), join(&staging, &folder).join("data.parquet"));
                let writer = AsyncArrowWriter::try_new(object, file_schema.clone(), Some(writer_properties()?))?;
                writers.insert(folder.clone(), (writer, Pending::default()));
            }
            let (writer, pending) = writers.get_mut(&folder).expect("inserted");
            pending.push(part, &file_schema)?;
            if pending.rows >= PENDING_ROWS {
                if let Some(batch) = pending.take(&file_schema)? {
                    writer.write(&batch).await?;
                }
            }
        }
        Ok::<_, MaterializeError>(())
    }
    .await;
    if let Err(error) = received {
        // Stop receiving (the splitters then stop) and abandon the unfinished objects.
        drop(parts);
        for (_, (writer, _)) in writers {
            let mut object = writer.into_inner();
            let _ = object.abort().await;
        }
        return Err(error);
    }
    let mut bytes = 0u64;
    let folders: Vec<String> = writers.keys().cloned().collect();
    for (folder, (mut writer, mut pending)) in writers {
        if let Some(batch) = pending.take(&file_schema)? {
            writer.write(&batch).await?;
        }
        writer.close().await?;
        bytes += store.head(&join(&staging, &folder).join("data.parquet")).await?.size;
    }
    Ok((folders, bytes))
}
