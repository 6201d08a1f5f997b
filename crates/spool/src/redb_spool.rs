//! The redb backend: a `data` table and a `meta` table, in one database
//! file or in two.

// redb::Error is large, but it only travels up one call on the failure
// path before becoming a SpoolError.
#![allow(clippy::result_large_err)]

use crate::{Spool, SpoolBatch, SpoolEntry, SpoolError};
use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The database file inside a spool directory.
const DB_FILE: &str = "spool.redb";

struct Db {
    db: Database,
    path: PathBuf,
}

impl Db {
    fn open(dir: &Path) -> Result<Self, SpoolError> {
        let path = dir.join(DB_FILE);
        let fail = |message: String| SpoolError::Storage {
            path: path.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir)
            .map_err(|err| fail(format!("creating the directory: {err}")))?;
        let db = Database::create(&path).map_err(|err| fail(err.to_string()))?;
        let db = Db { db, path };
        // Create both tables so readers never meet a missing one.
        db.write(|txn| {
            txn.open_table(DATA)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(db)
    }

    fn error(&self, err: impl std::fmt::Display) -> SpoolError {
        SpoolError::Storage {
            path: self.path.display().to_string(),
            message: err.to_string(),
        }
    }

    /// Run `f` in a write transaction and commit it durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(|err| self.error(err))?;
        f(&txn).map_err(|err| self.error(err))?;
        txn.commit().map_err(|err| self.error(err))
    }
}

/// A spool in redb. With one directory both tables share a file and a batch
/// is one transaction. With separate data and meta directories (KumoMTA's
/// `define_spool { name = 'data' }` and `{ name = 'meta' }`), the meta record
/// is the commit point: data is written first and removed last, so a crash
/// leaves at worst data without meta, which [`Spool::load_all`] deletes.
pub struct RedbSpool {
    data: Db,
    meta: Option<Db>,
    /// Data of removed messages whose meta is already gone; deleted with
    /// the next data transaction (saves a third commit per batch).
    deferred_data_removals: Mutex<Vec<String>>,
}

impl RedbSpool {
    /// Open (or create) the spool: data under `data_dir`, meta under
    /// `meta_dir` when it is another directory, else next to the data.
    pub fn open(data_dir: &Path, meta_dir: Option<&Path>) -> Result<Self, SpoolError> {
        let data = Db::open(data_dir)?;
        let meta = match meta_dir {
            Some(dir) if dir != data_dir => Some(Db::open(dir)?),
            _ => None,
        };
        Ok(RedbSpool {
            data,
            meta,
            deferred_data_removals: Mutex::new(Vec::new()),
        })
    }

    /// The data database file.
    pub fn data_path(&self) -> &Path {
        &self.data.path
    }
}

fn insert_entries(
    txn: &redb::WriteTransaction,
    entries: &[SpoolEntry],
    meta: bool,
    data: bool,
) -> Result<(), redb::Error> {
    if data {
        let mut table = txn.open_table(DATA)?;
        for entry in entries {
            table.insert(entry.id.as_str(), entry.data.as_slice())?;
        }
    }
    if meta {
        let mut table = txn.open_table(META)?;
        for entry in entries {
            table.insert(entry.id.as_str(), entry.meta.as_slice())?;
        }
    }
    Ok(())
}

fn remove_ids(
    txn: &redb::WriteTransaction,
    ids: &[String],
    table: TableDefinition<&str, &[u8]>,
) -> Result<(), redb::Error> {
    let mut table = txn.open_table(table)?;
    for id in ids {
        table.remove(id.as_str())?;
    }
    Ok(())
}

impl Spool for RedbSpool {
    fn apply(&self, batch: &SpoolBatch) -> Result<(), SpoolError> {
        if batch.is_empty() {
            return Ok(());
        }
        let Some(meta_db) = &self.meta else {
            return self.data.write(|txn| {
                insert_entries(txn, &batch.store, true, true)?;
                remove_ids(txn, &batch.remove, META)?;
                remove_ids(txn, &batch.remove, DATA)
            });
        };
        let deferred = std::mem::take(&mut *self.deferred_data_removals.lock());
        if !batch.store.is_empty() || !deferred.is_empty() {
            let result = self.data.write(|txn| {
                insert_entries(txn, &batch.store, false, true)?;
                remove_ids(txn, &deferred, DATA)
            });
            if let Err(err) = result {
                self.deferred_data_removals.lock().extend(deferred);
                return Err(err);
            }
        }
        meta_db.write(|txn| {
            insert_entries(txn, &batch.store, true, false)?;
            remove_ids(txn, &batch.remove, META)
        })?;
        self.deferred_data_removals
            .lock()
            .extend(batch.remove.iter().cloned());
        Ok(())
    }

    fn close(&self) -> Result<(), SpoolError> {
        let deferred = std::mem::take(&mut *self.deferred_data_removals.lock());
        if deferred.is_empty() {
            return Ok(());
        }
        self.data.write(|txn| remove_ids(txn, &deferred, DATA))
    }

    fn load_all(&self) -> Result<Vec<SpoolEntry>, SpoolError> {
        let meta_db = self.meta.as_ref().unwrap_or(&self.data);
        let meta_txn = meta_db.db.begin_read().map_err(|err| meta_db.error(err))?;
        let data_txn = self
            .data
            .db
            .begin_read()
            .map_err(|err| self.data.error(err))?;
        let meta_table = meta_txn
            .open_table(META)
            .map_err(|err| meta_db.error(err))?;
        let data_table = data_txn
            .open_table(DATA)
            .map_err(|err| self.data.error(err))?;
        let mut entries = Vec::new();
        let mut with_meta = BTreeSet::new();
        for item in meta_table.iter().map_err(|err| meta_db.error(err))? {
            let (id, meta) = item.map_err(|err| meta_db.error(err))?;
            let id = id.value().to_owned();
            with_meta.insert(id.clone());
            match data_table
                .get(id.as_str())
                .map_err(|err| self.data.error(err))?
            {
                Some(data) => entries.push(SpoolEntry {
                    id,
                    meta: meta.value().to_vec(),
                    data: data.value().to_vec(),
                }),
                None => warn!(id = %id, "spool: meta record without data; skipped"),
            }
        }
        let mut orphans = Vec::new();
        for item in data_table.iter().map_err(|err| self.data.error(err))? {
            let (id, _) = item.map_err(|err| self.data.error(err))?;
            if !with_meta.contains(id.value()) {
                orphans.push(id.value().to_owned());
            }
        }
        drop((meta_table, data_table, meta_txn, data_txn));
        if !orphans.is_empty() {
            // Removed messages whose data removal was still deferred when
            // the process stopped, or a store interrupted between commits.
            info!(
                count = orphans.len(),
                "spool: removing data records that have no meta record"
            );
            self.data.write(|txn| remove_ids(txn, &orphans, DATA))?;
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> SpoolEntry {
        SpoolEntry {
            id: id.to_owned(),
            meta: format!("meta-{id}").into_bytes(),
            data: format!("data-{id}").into_bytes(),
        }
    }

    fn round_trip(separate_meta: bool) {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let meta_dir = dir.path().join("meta");
        let meta = separate_meta.then_some(meta_dir.as_path());
        {
            let spool = RedbSpool::open(&data_dir, meta).unwrap();
            spool
                .apply(&SpoolBatch {
                    store: vec![entry("a"), entry("b"), entry("c")],
                    remove: vec![],
                })
                .unwrap();
            spool
                .apply(&SpoolBatch {
                    store: vec![entry("d")],
                    remove: vec!["b".into()],
                })
                .unwrap();
        }
        let spool = RedbSpool::open(&data_dir, meta).unwrap();
        let ids: Vec<_> = spool
            .load_all()
            .unwrap()
            .into_iter()
            .map(|e| {
                assert_eq!(e.data, format!("data-{}", e.id).into_bytes());
                assert_eq!(e.meta, format!("meta-{}", e.id).into_bytes());
                e.id
            })
            .collect();
        assert_eq!(ids, ["a", "c", "d"]);
    }

    #[test]
    fn one_file_round_trip() {
        round_trip(false);
    }

    #[test]
    fn two_files_round_trip_and_orphans() {
        round_trip(true);
        // Data without meta (a crash between the two commits) is dropped.
        let dir = tempfile::tempdir().unwrap();
        let (data_dir, meta_dir) = (dir.path().join("d"), dir.path().join("m"));
        {
            let data_only = RedbSpool::open(&data_dir, None).unwrap();
            data_only
                .data
                .write(|txn| insert_entries(txn, &[entry("orphan")], false, true))
                .unwrap();
        }
        let spool = RedbSpool::open(&data_dir, Some(&meta_dir)).unwrap();
        assert!(spool.load_all().unwrap().is_empty());
        let txn = spool.data.db.begin_read().unwrap();
        let table = txn.open_table(DATA).unwrap();
        assert!(table.get("orphan").unwrap().is_none());
    }

    #[test]
    fn unusable_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = RedbSpool::open(&file.join("sub"), None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("file"), "{err}");
    }
}
