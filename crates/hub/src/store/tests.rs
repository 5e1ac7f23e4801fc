//! Unit tests of the store: group commit, per-operation failure isolation, reads, close.

use super::*;

async fn open_temp() -> (tempfile::TempDir, Store, TaskTracker) {
    let dir = tempfile::tempdir().unwrap();
    let tracker = TaskTracker::new();
    let store = Store::open(&dir.path().join("t.db"), &tracker).unwrap();
    store
        .write(|tx| tx.execute_batch("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"))
        .await
        .unwrap();
    (dir, store, tracker)
}

fn count(store: &Store) -> i64 {
    store
        .read_blocking(|conn| conn.query_row("SELECT count(*) FROM kv", [], |row| row.get(0)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_all_commit() {
    let (_dir, store, _tracker) = open_temp().await;
    let mut set = tokio::task::JoinSet::new();
    for idx in 0..500 {
        let store = store.clone();
        set.spawn(async move {
            store
                .write(move |tx| {
                    tx.execute("INSERT INTO kv VALUES (?1, ?2)", (format!("k{idx}"), idx))
                        .map(|_| ())
                })
                .await
        });
    }
    while let Some(res) = set.join_next().await {
        res.unwrap().unwrap();
    }
    assert_eq!(count(&store), 500);
}

#[tokio::test]
async fn a_failing_operation_fails_alone() {
    let (_dir, store, _tracker) = open_temp().await;
    let first = store.write(|tx| tx.execute("INSERT INTO kv VALUES ('a', 1)", []).map(|_| ()));
    let duplicate = store.write(|tx| {
        tx.execute("INSERT INTO kv VALUES ('b', 2)", [])?;
        tx.execute("INSERT INTO kv VALUES ('a', 3)", []).map(|_| ())
    });
    let third = store.write(|tx| tx.execute("INSERT INTO kv VALUES ('c', 4)", []).map(|_| ()));
    let (first, duplicate, third) = tokio::join!(first, duplicate, third);
    first.unwrap();
    third.unwrap();
    assert!(matches!(duplicate, Err(StoreError::Sqlite(_))));
    // 'b' was rolled back with its failing operation.
    let keys: Vec<String> = store
        .read(|conn| {
            conn.prepare("SELECT k FROM kv ORDER BY k")?.query_map([], |row| row.get(0))?.collect()
        })
        .await
        .unwrap();
    assert_eq!(keys, ["a", "c"]);
}

#[tokio::test]
async fn close_commits_then_refuses() {
    let (dir, store, tracker) = open_temp().await;
    store
        .write_detached(|tx| tx.execute("INSERT INTO kv VALUES ('x', 1)", []).map(|_| ()))
        .await
        .unwrap();
    store.close().await;
    tracker.close();
    tracker.wait().await;
    assert!(matches!(store.write(|_| Ok(())).await, Err(StoreError::Closed)));
    let reopened = Store::open(&dir.path().join("t.db"), &TaskTracker::new()).unwrap();
    assert_eq!(count(&reopened), 1);
}
