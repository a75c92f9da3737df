//! The request log on a real SQLite file: the batched writer (flushes,
//! bursts, a full queue) and the usage queries (groups, buckets, range).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portico::store::sqlite::{DB_FILE, SqliteStore};
use portico::store::{RequestLogEntry, Store, UsageBucket, UsageGroup, UsageQuery, UsageRow};
use portico::telemetry::RequestLog;
use portico::telemetry::request_log::WriterOptions;

const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z, a whole day in Unix milliseconds.
const T0: i64 = 1_767_225_600_000;

fn at(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn entry(n: usize, at_ms: i64) -> RequestLogEntry {
    RequestLogEntry {
        request_id: format!("req_{n}"),
        at_ms,
        endpoint: "chat".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        operation: "chat".into(),
        dialect: "openai".into(),
        key_id: None,
        key_prefix: None,
        status: 200,
        error_kind: None,
        error_message: None,
        latency_ms: 100,
        ttft_ms: None,
        input_tokens: Some(10),
        output_tokens: Some(5),
        cached_input_tokens: None,
        cost_usd: Some(0.001),
        attempts: 1,
        fallbacks: 0,
        cancelled: false,
    }
}

/// Usage over hours 0 and 1 after `T0` (the range the usage tests log in).
fn first_two_hours(group_by: Vec<UsageGroup>, bucket: Option<UsageBucket>) -> UsageQuery {
    UsageQuery {
        from: at(T0),
        to: at(T0 + 2 * HOUR),
        group_by,
        bucket,
    }
}

async fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.path().join(DB_FILE)).await.unwrap())
}

async fn total(store: &Arc<dyn Store>) -> UsageRow {
    let rows = store
        .query_usage(&UsageQuery {
            from: at(0),
            to: SystemTime::now() + Duration::from_secs(3600),
            group_by: vec![],
            bucket: None,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "totals are one row");
    rows[0].clone()
}

#[tokio::test]
async fn writer_flushes_by_size_by_time_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let log = RequestLog::spawn(
        store.clone(),
        WriterOptions {
            capacity: 10_000,
            batch_size: 50,
            interval: Duration::from_millis(200),
        },
    );
    // A burst far larger than a batch: all of it is written.
    for n in 0..2_000 {
        log.submit(entry(n, T0));
    }
    log.flush().await;
    assert_eq!(total(&store).await.requests, 2_000);
    assert_eq!(log.dropped(), 0);

    // Below the batch size, the timer writes it without a flush.
    for n in 0..3 {
        log.submit(entry(10_000 + n, T0));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while total(&store).await.requests < 2_003 {
        assert!(
            std::time::Instant::now() < deadline,
            "timer flush did not happen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    log.submit(entry(20_000, T0));
    log.close().await;
    assert_eq!(total(&store).await.requests, 2_004);
    // After close, entries are dropped (and counted), never blocking.
    log.submit(entry(20_001, T0));
    assert_eq!(log.dropped(), 1);
    store.close().await;
}

#[tokio::test]
async fn a_dropped_log_still_writes_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let log = RequestLog::spawn(
        store.clone(),
        WriterOptions {
            capacity: 100,
            batch_size: 50,
            interval: Duration::from_secs(3600),
        },
    );
    for n in 0..3 {
        log.submit(entry(n, T0));
    }
    drop(log);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while total(&store).await.requests < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "entries held by a dropped log were lost"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let log = RequestLog::spawn(
        store.clone(),
        WriterOptions {
            capacity: 10,
            batch_size: 5,
            interval: Duration::from_secs(1),
        },
    );
    // On a single-threaded runtime the writer cannot run while we submit:
    // the queue fills at 10 and the rest is dropped at once.
    for n in 0..100 {
        log.submit(entry(n, T0));
    }
    assert_eq!(log.dropped(), 90);
    log.flush().await;
    assert_eq!(total(&store).await.requests, 10);
    log.close().await;
    store.close().await;
}

/// Percentiles by nearest rank, per group and bucket, whatever order the
/// calls were logged in.
#[tokio::test]
async fn usage_latency_percentiles_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    // "chat": latencies 1..=100 ms logged in a scrambled order; "embed":
    // one call in the first hour, two in the second.
    let mut entries: Vec<RequestLogEntry> = (1..=100u64)
        .map(|n| {
            let mut e = entry(n as usize, T0 + (n as i64 * 37 % 100) * 1_000);
            e.latency_ms = (n * 61) % 100 + 1;
            e
        })
        .collect();
    for (n, (at_ms, latency)) in [(T0 + 5, 7), (T0 + HOUR, 40), (T0 + HOUR + 1, 20)]
        .into_iter()
        .enumerate()
    {
        let mut e = entry(1_000 + n, at_ms);
        e.endpoint = "embed".into();
        e.latency_ms = latency;
        entries.push(e);
    }
    store.insert_request_log(entries).await.unwrap();
    let percentiles = |r: &UsageRow| (r.p50_latency_ms, r.p95_latency_ms, r.p99_latency_ms);

    let by_endpoint = store
        .query_usage(&first_two_hours(vec![UsageGroup::Endpoint], None))
        .await
        .unwrap();
    assert_eq!(by_endpoint[0].endpoint.as_deref(), Some("chat"));
    assert_eq!(percentiles(&by_endpoint[0]), (50, 95, 99));
    assert_eq!(by_endpoint[0].max_latency_ms, 100);
    assert_eq!(by_endpoint[1].endpoint.as_deref(), Some("embed"));
    assert_eq!(percentiles(&by_endpoint[1]), (20, 40, 40));

    let by_hour = store
        .query_usage(&first_two_hours(
            vec![UsageGroup::Endpoint],
            Some(UsageBucket::Hour),
        ))
        .await
        .unwrap();
    let embed: Vec<_> = by_hour
        .iter()
        .filter(|r| r.endpoint.as_deref() == Some("embed"))
        .map(percentiles)
        .collect();
    assert_eq!(embed, vec![(7, 7, 7), (20, 40, 40)]);

    // All 103 calls (7, 20 and 40 twice): the 52nd, 98th and 102nd smallest.
    let all = total(&store).await;
    assert_eq!(all.requests, 103);
    assert_eq!(percentiles(&all), (49, 95, 99));

    // No calls: zeros, as for the other latency figures.
    let none = UsageQuery {
        from: at(T0 - HOUR),
        to: at(T0),
        group_by: vec![],
        bucket: None,
    };
    let empty = &store.query_usage(&none).await.unwrap()[0];
    assert_eq!((empty.requests, percentiles(empty)), (0, (0, 0, 0)));
}

#[tokio::test]
async fn usage_groups_buckets_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut entries = Vec::new();
    // Hour 0: two openai calls (one failed), one anthropic stream.
    let mut e = entry(1, T0 + 1_000);
    e.latency_ms = 100;
    entries.push(e);
    let mut e = entry(2, T0 + 2_000);
    e.status = 502;
    e.input_tokens = None;
    e.output_tokens = None;
    e.cost_usd = None;
    e.latency_ms = 300;
    entries.push(e);
    let mut e = entry(3, T0 + 3_000);
    e.endpoint = "claude".into();
    e.provider = "anthropic".into();
    e.model = "claude-x".into();
    e.operation = "chat_stream".into();
    e.ttft_ms = Some(40);
    e.input_tokens = Some(100);
    e.output_tokens = Some(50);
    e.cost_usd = Some(0.25);
    e.key_id = Some("key_1".into());
    e.key_prefix = Some("pk_abc".into());
    entries.push(e);
    // Hour 1: an openai call with an unpriced model.
    let mut e = entry(4, T0 + HOUR + 5);
    e.model = "mystery".into();
    e.cost_usd = None;
    e.ttft_ms = Some(60);
    entries.push(e);
    // Outside the range: at `to` exactly, and before `from`.
    entries.push(entry(5, T0 + 2 * HOUR));
    entries.push(entry(6, T0 - 1));
    store.insert_request_log(entries.clone()).await.unwrap();

    let totals = store
        .query_usage(&first_two_hours(vec![], None))
        .await
        .unwrap();
    assert_eq!(totals.len(), 1);
    let t = &totals[0];
    assert_eq!((t.requests, t.errors), (4, 1));
    assert_eq!(
        (t.input_tokens, t.output_tokens),
        (10 + 100 + 10, 5 + 50 + 5)
    );
    assert!((t.cost_usd - 0.251).abs() < 1e-9, "{}", t.cost_usd);
    assert_eq!(t.unpriced_requests, 1);
    assert_eq!(t.max_latency_ms, 300);
    assert_eq!(t.avg_ttft_ms, Some(50.0));

    let by_provider = store
        .query_usage(&first_two_hours(
            vec![UsageGroup::Provider],
            Some(UsageBucket::Hour),
        ))
        .await
        .unwrap();
    let view: Vec<_> = by_provider
        .iter()
        .map(|r| (r.bucket_start_ms, r.provider.as_deref(), r.requests))
        .collect();
    assert_eq!(
        view,
        vec![
            (Some(T0), Some("anthropic"), 1),
            (Some(T0), Some("openai"), 2),
            (Some(T0 + HOUR), Some("openai"), 1),
        ]
    );
    assert_eq!(by_provider[1].avg_latency_ms, 200.0);
    assert!(by_provider.iter().all(|r| r.endpoint.is_none()));

    let by_key_model = store
        .query_usage(&first_two_hours(
            vec![UsageGroup::Key, UsageGroup::Model],
            None,
        ))
        .await
        .unwrap();
    let view: Vec<_> = by_key_model
        .iter()
        .map(|r| {
            (
                r.key.as_deref(),
                r.key_prefix.as_deref(),
                r.model.as_deref(),
                r.requests,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (Some(""), None, Some("gpt-4o-mini"), 2),
            (Some(""), None, Some("mystery"), 1),
            (Some("key_1"), Some("pk_abc"), Some("claude-x"), 1),
        ]
    );

    let by_minute_endpoint = store
        .query_usage(&first_two_hours(
            vec![UsageGroup::Endpoint],
            Some(UsageBucket::Minute),
        ))
        .await
        .unwrap();
    assert_eq!(by_minute_endpoint.len(), 3);

    // An empty range: totals of zero, no grouped rows.
    let empty = UsageQuery {
        from: at(T0 + 10 * HOUR),
        to: at(T0 + 11 * HOUR),
        group_by: vec![UsageGroup::Endpoint],
        bucket: Some(UsageBucket::Day),
    };
    assert!(store.query_usage(&empty).await.unwrap().is_empty());

    // The log pages newest first; pruning drops what is older.
    let page = store
        .list_request_log(at(0), at(T0 + 3 * HOUR), None, 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .map(|r| r.entry.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req_6", "req_5"]
    );
    let next = store
        .list_request_log(at(0), at(T0 + 3 * HOUR), Some(page[1].id), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 4);
    assert_eq!(next[0].entry, entries[3]);
    assert_eq!(store.prune_request_log(at(T0 + HOUR)).await.unwrap(), 4);
    assert_eq!(total(&store).await.requests, 2);
    store.close().await;
}

/// The request log has a connection of its own: batches written while the
/// pool writes too all land, and a closed store refuses them with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_batches_land_beside_other_writes_and_fail_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..200 {
                store.set_meta("counter", &n.to_string()).await.unwrap();
            }
        })
    };
    for batch in 0..20 {
        let entries = (0..50).map(|n| entry(batch * 50 + n, T0)).collect();
        store.insert_request_log(entries).await.unwrap();
    }
    writer.await.unwrap();
    assert_eq!(total(&store).await.requests, 1_000);
    assert_eq!(
        store.get_meta("counter").await.unwrap().as_deref(),
        Some("199")
    );

    store.close().await;
    let refused = store.insert_request_log(vec![entry(0, T0)]).await;
    assert!(refused.is_err(), "{refused:?}");
}
