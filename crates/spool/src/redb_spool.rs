//! The redb backend: a `data` table and a `meta` table, in one database
//! file or in two, and an `ids` table beside the data (the data keys alone,
//! so start-up can find data without meta without reading any body).

// redb::Error is large, but it only travels up one call on the failure
// path before becoming a SpoolError.
#![allow(clippy::result_large_err)]

use crate::{Spool, SpoolBatch, SpoolEntry, SpoolError};
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tracing::info;

const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The keys of `data`, written in the same transactions: iterating `data`
/// itself would read every body (redb keeps values in the leaf pages).
const DATA_IDS: TableDefinition<&str, ()> = TableDefinition::new("data_ids");
/// One row rewritten by [`Spool::recover`] to prove writes work again.
const PROBE: TableDefinition<&str, u64> = TableDefinition::new("probe");

/// The database file inside a spool directory.
const DB_FILE: &str = "spool.redb";

/// redb's page cache per database file. redb's default (1 GiB) would let
/// the daemon's memory grow with the spool as bodies are read for
/// delivery; pages beyond this are read from the OS page cache again.
pub const CACHE_SIZE: usize = 16 * 1024 * 1024;

/// One redb file. After an I/O error redb refuses every further operation
/// ("Previous I/O error occurred"), so the handle can be dropped and the
/// file opened again ([`Db::reopen`]).
struct Db {
    db: RwLock<Option<Database>>,
    dir: PathBuf,
    path: PathBuf,
}

impl Db {
    fn open(dir: &Path) -> Result<Self, SpoolError> {
        let db = Db {
            db: RwLock::new(None),
            dir: dir.to_owned(),
            path: dir.join(DB_FILE),
        };
        db.reopen()?;
        Ok(db)
    }

    /// Drop the current handle (if any) and open the file again; creates
    /// the directory, the file and every table as needed.
    fn reopen(&self) -> Result<(), SpoolError> {
        let mut slot = self.db.write();
        // The old handle holds the file lock: it must go first.
        slot.take();
        std::fs::create_dir_all(&self.dir)
            .map_err(|err| self.error(format!("creating the directory: {err}")))?;
        let database = redb::Builder::new()
            .set_cache_size(CACHE_SIZE)
            .create(&self.path)
            .map_err(|err| self.error(err))?;
        // Create the tables so readers never meet a missing one.
        let txn = database.begin_write().map_err(|err| self.error(err))?;
        let created = (|| -> Result<(), redb::Error> {
            txn.open_table(DATA)?;
            txn.open_table(META)?;
            txn.open_table(DATA_IDS)?;
            txn.open_table(PROBE)?;
            Ok(())
        })();
        created.map_err(|err| self.error(err))?;
        txn.commit().map_err(|err| self.error(err))?;
        *slot = Some(database);
        Ok(())
    }

    fn error(&self, err: impl std::fmt::Display) -> SpoolError {
        SpoolError::Storage {
            path: self.path.display().to_string(),
            message: err.to_string(),
        }
    }

    fn closed(&self) -> SpoolError {
        self.error("not open (a reopen after an I/O error failed)")
    }

    /// Run `f` in a write transaction and commit it durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), SpoolError> {
        let guard = self.db.read();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let txn = db.begin_write().map_err(|err| self.error(err))?;
        f(&txn).map_err(|err| self.error(err))?;
        txn.commit().map_err(|err| self.error(err))
    }

    /// Run `f` in a read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, SpoolError> {
        let guard = self.db.read();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let txn = db.begin_read().map_err(|err| self.error(err))?;
        f(&txn).map_err(|err| self.error(err))
    }

    /// A durable write of one small row.
    fn probe(&self) -> Result<(), SpoolError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.write(|txn| {
            txn.open_table(PROBE)?.insert("last_recovery", now)?;
            Ok(())
        })
    }
}

/// A spool in redb. With one directory both tables share a file and a batch
/// is one transaction. With separate data and meta directories (KumoMTA's
/// `define_spool { name = 'data' }` and `{ name = 'meta' }`), the meta record
/// is the commit point: data is written first and removed last, so a crash
/// leaves at worst data without meta, which [`Spool::scan_meta`] deletes.
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

    fn meta_db(&self) -> &Db {
        self.meta.as_ref().unwrap_or(&self.data)
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
        let mut ids = txn.open_table(DATA_IDS)?;
        // An entry without data (a record that is not a message, such as
        // an idempotency record) is its meta record alone.
        for entry in entries.iter().filter(|entry| !entry.data.is_empty()) {
            table.insert(entry.id.as_str(), entry.data.as_slice())?;
            ids.insert(entry.id.as_str(), ())?;
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

fn remove_meta(txn: &redb::WriteTransaction, ids: &[String]) -> Result<(), redb::Error> {
    let mut table = txn.open_table(META)?;
    for id in ids {
        table.remove(id.as_str())?;
    }
    Ok(())
}

fn remove_data(txn: &redb::WriteTransaction, ids: &[String]) -> Result<(), redb::Error> {
    let mut table = txn.open_table(DATA)?;
    let mut keys = txn.open_table(DATA_IDS)?;
    for id in ids {
        table.remove(id.as_str())?;
        keys.remove(id.as_str())?;
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
                remove_meta(txn, &batch.remove)?;
                remove_data(txn, &batch.remove)
            });
        };
        let deferred = std::mem::take(&mut *self.deferred_data_removals.lock());
        if !batch.store.is_empty() || !deferred.is_empty() {
            let result = self.data.write(|txn| {
                insert_entries(txn, &batch.store, false, true)?;
                remove_data(txn, &deferred)
            });
            if let Err(err) = result {
                self.deferred_data_removals.lock().extend(deferred);
                return Err(err);
            }
        }
        meta_db.write(|txn| {
            insert_entries(txn, &batch.store, true, false)?;
            remove_meta(txn, &batch.remove)
        })?;
        self.deferred_data_removals
            .lock()
            .extend(batch.remove.iter().cloned());
        Ok(())
    }

    fn recover(&self) -> Result<(), SpoolError> {
        self.data.reopen()?;
        if let Some(meta) = &self.meta {
            meta.reopen()?;
        }
        self.data.probe()?;
        if let Some(meta) = &self.meta {
            meta.probe()?;
        }
        Ok(())
    }

    fn close(&self) -> Result<(), SpoolError> {
        let deferred = std::mem::take(&mut *self.deferred_data_removals.lock());
        if deferred.is_empty() {
            return Ok(());
        }
        self.data.write(|txn| remove_data(txn, &deferred))
    }

    fn load(&self, id: &str) -> Result<Option<SpoolEntry>, SpoolError> {
        let meta = self.meta_db().read(|txn| {
            let table = txn.open_table(META)?;
            Ok(table.get(id)?.map(|value| value.value().to_vec()))
        })?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let data = self.data.read(|txn| {
            let table = txn.open_table(DATA)?;
            Ok(table.get(id)?.map(|value| value.value().to_vec()))
        })?;
        // Entries stored without data have none (see `insert_entries`).
        Ok(Some(SpoolEntry {
            id: id.to_owned(),
            meta,
            data: data.unwrap_or_default(),
        }))
    }

    fn scan_meta(&self, visit: &mut dyn FnMut(&str, &[u8])) -> Result<(), SpoolError> {
        self.remove_orphans()?;
        let meta_db = self.meta_db();
        meta_db.read(|txn| {
            let table = txn.open_table(META)?;
            for item in table.iter()? {
                let (id, meta) = item?;
                visit(id.value(), meta.value());
            }
            Ok(())
        })
    }
}

impl RedbSpool {
    /// Delete data records that have no meta record: removed messages whose
    /// data removal was still deferred when the process stopped, or a store
    /// interrupted between its two commits. Reads keys only.
    fn remove_orphans(&self) -> Result<(), SpoolError> {
        let Some(meta_db) = &self.meta else {
            // One file: data and meta change in the same transactions.
            return Ok(());
        };
        let with_meta: BTreeSet<String> = meta_db.read(|txn| {
            let table = txn.open_table(META)?;
            let mut ids = BTreeSet::new();
            for item in table.iter()? {
                ids.insert(item?.0.value().to_owned());
            }
            Ok(ids)
        })?;
        let orphans: Vec<String> = self.data.read(|txn| {
            let table = txn.open_table(DATA_IDS)?;
            let mut orphans = Vec::new();
            for item in table.iter()? {
                let id = item?.0;
                if !with_meta.contains(id.value()) {
                    orphans.push(id.value().to_owned());
                }
            }
            Ok(orphans)
        })?;
        if !orphans.is_empty() {
            info!(
                count = orphans.len(),
                "spool: removing data records that have no meta record"
            );
            self.data.write(|txn| remove_data(txn, &orphans))?;
        }
        Ok(())
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
        let left = spool
            .data
            .read(|txn| {
                let data = txn.open_table(DATA)?.get("orphan")?.is_some();
                let id = txn.open_table(DATA_IDS)?.get("orphan")?.is_some();
                Ok((data, id))
            })
            .unwrap();
        assert_eq!(left, (false, false));
    }

    #[test]
    fn an_entry_without_data_is_its_meta_alone() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RedbSpool::open(&dir.path().join("d"), Some(&dir.path().join("m"))).unwrap();
        let record = SpoolEntry {
            id: "record".into(),
            meta: b"meta-record".to_vec(),
            data: Vec::new(),
        };
        spool
            .apply(&SpoolBatch {
                store: vec![record.clone(), entry("a")],
                remove: vec![],
            })
            .unwrap();
        let in_data_file = spool
            .data
            .read(|txn| Ok(txn.open_table(DATA_IDS)?.get("record")?.is_some()))
            .unwrap();
        assert!(!in_data_file, "no data row for a record");
        assert_eq!(spool.load("record").unwrap(), Some(record));
        assert_eq!(spool.load("a").unwrap(), Some(entry("a")));
    }

    #[test]
    fn single_loads_and_meta_scans() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RedbSpool::open(&dir.path().join("d"), Some(&dir.path().join("m"))).unwrap();
        spool
            .apply(&SpoolBatch {
                store: vec![entry("a"), entry("b")],
                remove: vec![],
            })
            .unwrap();
        assert_eq!(spool.load("b").unwrap(), Some(entry("b")));
        assert_eq!(spool.load("zz").unwrap(), None);
        let mut seen = Vec::new();
        spool
            .scan_meta(&mut |id, meta| seen.push((id.to_owned(), meta.to_vec())))
            .unwrap();
        assert_eq!(
            seen,
            [
                ("a".to_owned(), b"meta-a".to_vec()),
                ("b".to_owned(), b"meta-b".to_vec())
            ]
        );
    }

    #[test]
    fn recover_reopens_and_keeps_entries() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RedbSpool::open(&dir.path().join("d"), Some(&dir.path().join("m"))).unwrap();
        spool
            .apply(&SpoolBatch {
                store: vec![entry("a")],
                remove: vec![],
            })
            .unwrap();
        spool.recover().unwrap();
        spool
            .apply(&SpoolBatch {
                store: vec![entry("b")],
                remove: vec!["a".into()],
            })
            .unwrap();
        let ids: Vec<_> = spool
            .load_all()
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["b"]);
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
