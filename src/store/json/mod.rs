//! The embedded JSON store: all records in memory, every acknowledged write one fsynced journal record (group
//! commit), the legacy files rewritten from memory by compaction. See `journal` for the on-disk record format.
//!
//! Threads: request tasks apply their change to the *working* state under a short mutex and queue the encoded
//! record; one journal thread appends and fsyncs whatever is queued (so concurrent writes share one fsync) and
//! then publishes the working snapshot to readers, which is why a write becomes visible only once it is durable;
//! one compaction thread rewrites the legacy files from a published snapshot while writes go on into a new
//! segment.

pub mod format;
pub mod fs;
pub mod journal;
pub mod lock;
pub mod outbox;
pub mod state;

mod store_impl;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use self::fs::Fs;
use self::journal::{Marker, Record};
use self::outbox::JsonOutbox;
use self::state::{Dirty, FileKey, Op, State};
use super::{StoreError, StoreResult};
use crate::domain::events::{DomainEvent, EventSink};
use crate::domain::time;
use crate::store::outbox::{OutboxEntry, OutboxSource};

#[derive(Clone, Debug)]
pub struct JsonOptions {
    pub data_dir: PathBuf,
    pub compact_bytes: u64,
    pub compact_seconds: u64,
    pub fs: Fs,
}

impl JsonOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> JsonOptions {
        JsonOptions { data_dir: data_dir.into(), compact_bytes: 64 << 20, compact_seconds: 300, fs: Fs::default() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Load(#[from] format::LoadError),
    #[error(transparent)]
    Replay(#[from] journal::ReplayError),
    #[error("{0}")]
    Io(String),
}

type Waiter = oneshot::Sender<StoreResult<()>>;

struct Writer {
    working: State,
    next_seq: u64,
    durable_seq: u64,
    buf: Vec<u8>,
    waiters: Vec<Waiter>,
    /// Events of the queued records, in seq order; delivered only once their records are durable.
    events: Vec<DomainEvent>,
    dirty: Dirty,
    compact_requests: Vec<Waiter>,
    /// Set when a failed append could not be cut back off the journal: appending more would put a bad record
    /// before good ones, so every write is refused until a restart replays and repairs the journal.
    poisoned: Option<String>,
    shutdown: bool,
    /// dual-json: the store epoch stamped on outbox entries; `None` when writes record no outbox entries.
    outbox_epoch: Option<u64>,
    next_outbox_seq: u64,
    /// Outbox entries of the queued records; handed to the outbox only once their records are durable.
    outbox_entries: Vec<OutboxEntry>,
}

struct Shared {
    opts: JsonOptions,
    journal_dir: PathBuf,
    writer: Mutex<Writer>,
    cond: Condvar,
    visible: ArcSwap<State>,
    sink: arc_swap::ArcSwapOption<EventSink>,
    /// Compaction jobs finished so far; the journal thread counts the jobs it sent, so "a compaction is running"
    /// is `completed < sent` and waiting for it cannot be confused by an old notification.
    completed: Mutex<u64>,
    completed_cv: Condvar,
    /// Dirty sets of failed compactions, handed back to the journal thread for the next attempt.
    returned_dirty: Mutex<Dirty>,
    outbox: Arc<JsonOutbox>,
}

pub struct JsonStore {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Writes hold it shared; a store switch takes it exclusively to pause writes (they wait, they do not fail)
    /// while the outbox drains its last entries.
    gate: Arc<tokio::sync::RwLock<()>>,
}

struct Segment {
    file: File,
    path: PathBuf,
    good_len: u64,
}

impl Segment {
    fn open(dir: &Path, first_seq: u64) -> std::io::Result<Segment> {
        let path = journal::segment_path(dir, first_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let good_len = file.metadata()?.len();
        Ok(Segment { file, path, good_len })
    }

    fn append(&mut self, fs: &Fs, bytes: &[u8]) -> std::io::Result<()> {
        fs.append(&mut self.file, &self.path, bytes)?;
        fs.sync(&self.file, &self.path)?;
        self.good_len += bytes.len() as u64;
        Ok(())
    }

    fn cut_back(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.good_len)?;
        self.file.sync_data()
    }
}

struct CompactJob {
    snapshot: Arc<State>,
    seq: u64,
    dirty: Dirty,
    waiters: Vec<Waiter>,
    /// The outbox entries still pending at `seq`: written to `outbox/pending.jsonl` before the journal records
    /// that hold them are dropped.
    pending: Vec<OutboxEntry>,
}

impl JsonStore {
    /// Opens the data dir: finishes an interrupted compaction, loads the legacy files, replays the journal and
    /// compacts, then starts the journal and compaction threads. The caller holds the data dir lock.
    pub fn open(opts: JsonOptions) -> Result<JsonStore, OpenError> {
        let io = |what: &str, e: std::io::Error| OpenError::Io(format!("{what}: {e}"));
        let data_dir = opts.data_dir.clone();
        let journal_dir = data_dir.join("journal");
        for dir in [&data_dir, &journal_dir, &format::activities_dir(&data_dir)] {
            std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
        }
        if let Some(marker) = journal::read_marker(&journal_dir).map_err(|e| io("journal marker", e))? {
            tracing::warn!(seq = marker.seq, "completing an interrupted compaction");
            journal::finish_compaction(&opts.fs, &data_dir, &journal_dir, &marker)
                .map_err(|e| io("completing interrupted compaction", e))?;
        }
        remove_temp_files(&data_dir);
        remove_temp_files(&format::activities_dir(&data_dir));
        remove_temp_files(&journal_dir);
        ensure_empty_files(&opts.fs, &data_dir).map_err(|e| io("creating empty legacy files", e))?;

        let mut state = format::load_state(&data_dir)?;
        let base = journal::read_base(&journal_dir).map_err(|e| io("journal/BASE", e))?;
        let records = journal::read_all(&journal_dir, base)?;
        let mut dirty = Dirty::new();
        let mut last = base;
        let mut replayed_entries = Vec::new();
        for r in records.iter() {
            for op in &r.ops {
                state.apply(op, &mut dirty);
            }
            replayed_entries.extend(r.outbox.iter().cloned());
            last = r.seq;
        }
        if !records.is_empty() {
            tracing::info!(records = records.len(), last_seq = last, "journal replayed");
        }
        let outbox = JsonOutbox::load(&data_dir, opts.fs.clone(), replayed_entries).map_err(|e| io("outbox", e))?;
        // The pending entries must be safe in pending.jsonl before the compaction drops the records holding them.
        outbox.write_pending_file(&outbox.pending_snapshot()).map_err(|e| io("outbox/pending.jsonl", e))?;
        if !outbox.is_empty() {
            tracing::info!(pending = outbox.depth().0, "outbox entries pending from before the restart");
        }
        // Start-up compaction: the replayed writes reach the legacy files before anything else happens.
        compact(&opts.fs, &data_dir, &journal_dir, &state, last, &dirty).map_err(|e| io("start-up compaction", e))?;
        let segment = Segment::open(&journal_dir, last + 1).map_err(|e| io("opening journal segment", e))?;

        let shared = Arc::new(Shared {
            journal_dir,
            writer: Mutex::new(Writer {
                working: state.clone(),
                next_seq: last + 1,
                durable_seq: last,
                buf: Vec::new(),
                waiters: Vec::new(),
                events: Vec::new(),
                dirty: Dirty::new(),
                compact_requests: Vec::new(),
                poisoned: None,
                shutdown: false,
                outbox_epoch: None,
                next_outbox_seq: outbox.next_seq(),
                outbox_entries: Vec::new(),
            }),
            cond: Condvar::new(),
            visible: ArcSwap::from_pointee(state),
            sink: arc_swap::ArcSwapOption::empty(),
            completed: Mutex::new(0),
            completed_cv: Condvar::new(),
            returned_dirty: Mutex::new(Dirty::new()),
            outbox: Arc::new(outbox),
            opts,
        });
        let (job_tx, job_rx) = mpsc::channel::<CompactJob>();
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("json-compact".into())
            .spawn(move || compactor_loop(s2, job_rx))
            .map_err(|e| io("starting compaction thread", e))?;
        let s3 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("json-journal".into())
            .spawn(move || journal_loop(s3, segment, job_tx))
            .map_err(|e| io("starting journal thread", e))?;
        Ok(JsonStore { shared, thread: Mutex::new(Some(handle)), gate: Arc::new(tokio::sync::RwLock::new(())) })
    }

    /// The dual-json outbox (entries pending for PostgreSQL).
    pub fn outbox(&self) -> Arc<JsonOutbox> {
        self.shared.outbox.clone()
    }

    /// Starts recording an outbox entry with every write (dual-json), stamped with `epoch`. Takes the writer lock,
    /// so every write is either before (no entries) or after (entries) the change.
    pub fn enable_outbox(&self, epoch: u64) {
        self.shared.writer.lock().outbox_epoch = Some(epoch);
    }

    /// Stops recording outbox entries, but only when none is pending or queued; false (nothing changed) otherwise.
    /// With `discard`, pending entries are dropped first (`dual-json → json` with `force`).
    pub fn disable_outbox(&self, discard: bool) -> bool {
        let mut w = self.shared.writer.lock();
        if discard {
            if !w.outbox_entries.is_empty() {
                return false;
            }
            w.outbox_epoch = None;
            drop(w);
            let n = self.shared.outbox.discard_all();
            if n > 0 {
                tracing::warn!(discarded = n, "outbox entries discarded (forced switch); PostgreSQL is now stale");
            }
            return true;
        }
        if !w.outbox_entries.is_empty() || !self.shared.outbox.is_empty() {
            return false;
        }
        w.outbox_epoch = None;
        true
    }

    /// Pauses writes: waits (at most `timeout`) until every admitted write is durable, then holds new ones at the
    /// gate until the guard is dropped. `None` when the in-flight writes did not finish in time.
    pub async fn pause_writes(&self, timeout: Duration) -> Option<tokio::sync::OwnedRwLockWriteGuard<()>> {
        tokio::time::timeout(timeout, self.gate.clone().write_owned()).await.ok()
    }

    pub fn outbox_epoch(&self) -> Option<u64> {
        self.shared.writer.lock().outbox_epoch
    }

    /// The state as of the last durable write.
    pub fn snapshot(&self) -> Arc<State> {
        self.shared.visible.load_full()
    }

    /// Where committed writes' events go (the realtime layer); events are delivered in commit order.
    pub fn set_event_sink(&self, sink: EventSink) {
        self.shared.sink.store(Some(Arc::new(sink)));
    }

    /// A secondary emits no events: the primary's commits already did.
    pub fn clear_event_sink(&self) {
        self.shared.sink.store(None);
    }

    /// Applies one write: `f` decides (from the current state) what changes, the change is journaled, and the
    /// call returns once the record is fsynced. Nothing is visible to readers before that.
    pub async fn write<R>(&self, f: impl FnOnce(&State) -> StoreResult<(R, Vec<Op>)>) -> StoreResult<R> {
        self.write_with_events(|s| f(s).map(|(r, ops)| (r, ops, Vec::new()))).await
    }

    /// As [`write`](Self::write), plus the events to deliver once the record is durable.
    pub async fn write_with_events<R>(
        &self,
        f: impl FnOnce(&State) -> StoreResult<(R, Vec<Op>, Vec<DomainEvent>)>,
    ) -> StoreResult<R> {
        let started = Instant::now();
        let result = {
            let _admitted = self.gate.read().await;
            self.write_inner(f).await
        };
        // Domain outcomes (not found, conflict, rejected) are answers, not store errors.
        if let Err(StoreError::Unavailable(_) | StoreError::Other(_)) = &result {
            metrics::counter!("flux_store_errors_total", "backend" => "json", "op" => "write").increment(1);
        }
        metrics::histogram!("flux_store_operation_duration_seconds", "backend" => "json", "op" => "write")
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn write_inner<R>(
        &self,
        f: impl FnOnce(&State) -> StoreResult<(R, Vec<Op>, Vec<DomainEvent>)>,
    ) -> StoreResult<R> {
        let (result, rx) = {
            let mut guard = self.shared.writer.lock();
            let w = &mut *guard;
            if let Some(msg) = &w.poisoned {
                return Err(StoreError::Unavailable(msg.clone()));
            }
            if w.shutdown {
                return Err(StoreError::Unavailable("the JSON store is shut down".into()));
            }
            let (result, ops, events) = f(&w.working)?;
            if ops.is_empty() {
                return Ok(result);
            }
            for op in &ops {
                w.working.apply(op, &mut w.dirty);
            }
            let at = time::now();
            let mut outbox = Vec::new();
            if let Some(epoch) = w.outbox_epoch {
                for op in &ops {
                    outbox.push(OutboxEntry::from_op(op, w.next_outbox_seq, epoch, &at));
                    w.next_outbox_seq += 1;
                }
                w.outbox_entries.extend(outbox.iter().cloned());
            }
            let record = Record { seq: w.next_seq, at, ops, outbox };
            w.next_seq += 1;
            w.buf.extend_from_slice(&journal::encode(&record));
            w.events.extend(events);
            let (tx, rx) = oneshot::channel();
            w.waiters.push(tx);
            self.shared.cond.notify_one();
            (result, rx)
        };
        match rx.await {
            Ok(Ok(())) => Ok(result),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable("journal thread stopped".into())),
        }
    }

    /// Readiness probe: the writer is usable, the data dir can be listed, and a small file can be created, written
    /// and removed in the journal directory, where every write lands first. The probe file is named like the
    /// temporary files that start-up removes, should a crash leave it behind.
    pub async fn probe(&self) -> StoreResult<()> {
        {
            let w = self.shared.writer.lock();
            if w.shutdown {
                return Err(StoreError::Unavailable("store closed".into()));
            }
            if w.poisoned.is_some() {
                return Err(StoreError::Unavailable("journal unusable".into()));
            }
        }
        let shared = self.shared.clone();
        let probe = move || -> Result<(), &'static str> {
            std::fs::read_dir(&shared.opts.data_dir).map_err(|_| "data dir not readable")?;
            let path = shared.journal_dir.join(".ready-probe.tmp");
            std::fs::write(&path, b"ok").map_err(|_| "journal dir not writable")?;
            std::fs::remove_file(&path).map_err(|_| "journal dir not writable")
        };
        match tokio::task::spawn_blocking(probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Unavailable(reason.into())),
            Err(_) => Err(StoreError::Unavailable("probe failed".into())),
        }
    }

    /// Compacts now and waits for it (clean shutdown, operator commands).
    pub async fn compact_now(&self) -> StoreResult<()> {
        let rx = {
            let mut w = self.shared.writer.lock();
            let (tx, rx) = oneshot::channel();
            w.compact_requests.push(tx);
            self.shared.cond.notify_one();
            rx
        };
        rx.await.map_err(|_| StoreError::Unavailable("journal thread stopped".into()))?
    }

    /// Final compaction, then stops the threads. Writes after this are refused.
    pub async fn close(&self) -> StoreResult<()> {
        let result = self.compact_now().await;
        self.shared.writer.lock().shutdown = true;
        self.shared.cond.notify_one();
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        result
    }
}

impl Drop for JsonStore {
    fn drop(&mut self) {
        self.shared.writer.lock().shutdown = true;
        self.shared.cond.notify_one();
    }
}

fn remove_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn ensure_empty_files(fs: &Fs, data_dir: &Path) -> std::io::Result<()> {
    for (name, key) in
        [("users.json", "users"), ("projects.json", "projects"), ("teams.json", "teams"), ("files.json", "files")]
    {
        let path = data_dir.join(name);
        if !path.exists() {
            let tmp = data_dir.join(format!(".{name}.tmp-init"));
            fs.write_synced(&tmp, format!("{{\n  \"{key}\": []\n}}").as_bytes())?;
            fs.rename(&tmp, &path)?;
        }
    }
    fs.sync_dir(data_dir)
}

fn wait_for_compactions(shared: &Shared, sent: u64) {
    let mut done = shared.completed.lock();
    while *done < sent {
        shared.completed_cv.wait(&mut done);
    }
}

fn journal_loop(shared: Arc<Shared>, mut segment: Segment, jobs: mpsc::Sender<CompactJob>) {
    let fs = shared.opts.fs.clone();
    let mut sent: u64 = 0;
    let mut dirty_since = Dirty::new();
    let mut first_record_at: Option<Instant> = None;
    loop {
        let (batch, waiters, events, dirty, snapshot, last_seq, compact_requests, shutdown, entries) = {
            let mut w = shared.writer.lock();
            if w.buf.is_empty() && w.compact_requests.is_empty() && !w.shutdown {
                shared.cond.wait_for(&mut w, Duration::from_millis(500));
            }
            let snapshot = (!w.buf.is_empty()).then(|| Arc::new(w.working.clone()));
            (
                std::mem::take(&mut w.buf),
                std::mem::take(&mut w.waiters),
                std::mem::take(&mut w.events),
                std::mem::take(&mut w.dirty),
                snapshot,
                w.next_seq - 1,
                std::mem::take(&mut w.compact_requests),
                w.shutdown,
                std::mem::take(&mut w.outbox_entries),
            )
        };
        if let Some(snapshot) = snapshot {
            match segment.append(&fs, &batch) {
                Ok(()) => {
                    shared.visible.store(snapshot);
                    shared.writer.lock().durable_seq = last_seq;
                    dirty_since.extend(dirty);
                    first_record_at.get_or_insert_with(Instant::now);
                    // Pending before the client hears the ack, so "acknowledged" implies "in the outbox".
                    shared.outbox.push(entries);
                    if let Some(sink) = shared.sink.load_full() {
                        events.into_iter().for_each(|e| sink(e));
                    }
                    for w in waiters {
                        let _ = w.send(Ok(()));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, path = %segment.path.display(), "journal append failed; refusing the writes of this batch");
                    let msg = format!("journal write failed: {e}");
                    let mut w = shared.writer.lock();
                    // Later queued writes were computed on top of the failed ones: they fail too.
                    w.working = (**shared.visible.load()).clone();
                    w.buf.clear();
                    w.events.clear();
                    w.dirty.clear();
                    w.next_seq = w.durable_seq + 1;
                    w.outbox_entries.clear();
                    w.next_outbox_seq = shared.outbox.next_seq();
                    let more = std::mem::take(&mut w.waiters);
                    if let Err(e2) = segment.cut_back() {
                        tracing::error!(error = %e2, "cannot cut the failed record off the journal; refusing writes until restart");
                        w.poisoned = Some(format!("journal unusable after a failed write: {e2}"));
                    }
                    drop(w);
                    for waiter in waiters.into_iter().chain(more) {
                        let _ = waiter.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                }
            }
        }

        dirty_since.append(&mut shared.returned_dirty.lock());
        let due = segment.good_len > shared.opts.compact_bytes
            || first_record_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(shared.opts.compact_seconds));
        let wanted = due || !compact_requests.is_empty() || shutdown;
        if wanted {
            if *shared.completed.lock() < sent {
                if compact_requests.is_empty() && !shutdown {
                    continue;
                }
                // An explicit request must cover every write acknowledged before it: wait for the running one.
                wait_for_compactions(&shared, sent);
                dirty_since.append(&mut shared.returned_dirty.lock());
            }
            let seq = shared.writer.lock().durable_seq;
            let needs_rotation = segment.good_len > 0;
            if needs_rotation {
                match Segment::open(&shared.journal_dir, seq + 1) {
                    Ok(s) => segment = s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open a new journal segment; compaction postponed");
                        for w in compact_requests {
                            let _ = w.send(Err(StoreError::Unavailable(format!("compaction failed: {e}"))));
                        }
                        continue;
                    }
                }
            }
            first_record_at = None;
            let job = CompactJob {
                snapshot: shared.visible.load_full(),
                seq,
                dirty: std::mem::take(&mut dirty_since),
                waiters: compact_requests,
                pending: shared.outbox.pending_snapshot(),
            };
            if jobs.send(job).is_err() {
                return;
            }
            sent += 1;
            if shutdown {
                wait_for_compactions(&shared, sent);
                return;
            }
        } else if shutdown {
            return;
        }
    }
}

fn compactor_loop(shared: Arc<Shared>, jobs: mpsc::Receiver<CompactJob>) {
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        let result = shared.outbox.write_pending_file(&job.pending).and_then(|()| {
            compact(&shared.opts.fs, &shared.opts.data_dir, &shared.journal_dir, &job.snapshot, job.seq, &job.dirty)
        });
        metrics::histogram!("flux_store_operation_duration_seconds", "backend" => "json", "op" => "compact")
            .record(started.elapsed().as_secs_f64());
        let reply = match &result {
            Ok(()) => Ok(()),
            Err(e) => {
                metrics::counter!("flux_store_errors_total", "backend" => "json", "op" => "compact").increment(1);
                tracing::error!(error = %e, "compaction failed; the journal keeps every write and it will be retried");
                shared.returned_dirty.lock().extend(job.dirty.iter().cloned());
                Err(StoreError::Unavailable(format!("compaction failed: {e}")))
            }
        };
        for w in job.waiters {
            let _ = w.send(reply.clone());
        }
        *shared.completed.lock() += 1;
        shared.completed_cv.notify_all();
    }
}

/// Rewrites the dirty legacy files from `state` (the state at `seq`), then drops the journal segments it covers.
fn compact(
    fs: &Fs,
    data_dir: &Path,
    journal_dir: &Path,
    state: &State,
    seq: u64,
    dirty: &Dirty,
) -> std::io::Result<()> {
    // A previous attempt that failed half-way through its renames must finish first, or the files would mix
    // two snapshots.
    if let Some(marker) = journal::read_marker(journal_dir)? {
        journal::finish_compaction(fs, data_dir, journal_dir, &marker)?;
    }
    let mut renames = Vec::new();
    let mut removes = Vec::new();
    let tag: u32 = rand::random();
    let result = (|| {
        for key in dirty {
            let target = format::path_of(data_dir, key);
            match format::render(state, key) {
                Some(bytes) => {
                    let name = target.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    let tmp = target.with_file_name(format!(".{name}.tmp-{tag:08x}"));
                    fs.write_synced(&tmp, &bytes)?;
                    renames.push((tmp, target));
                }
                None => {
                    if let FileKey::Activities(_) = key {
                        removes.push(target);
                    }
                }
            }
        }
        let marker = Marker { seq, renames: renames.clone(), removes: removes.clone() };
        let tmp = journal_dir.join(".COMPACTING.tmp");
        fs.write_synced(&tmp, &serde_json::to_vec(&marker).expect("marker serialises"))?;
        fs.rename(&tmp, &journal_dir.join(journal::MARKER))?;
        fs.sync_dir(journal_dir)?;
        Ok(marker)
    })();
    match result {
        Ok(marker) => journal::finish_compaction(fs, data_dir, journal_dir, &marker),
        Err(e) => {
            for (tmp, _) in renames {
                let _ = std::fs::remove_file(tmp);
            }
            Err(e)
        }
    }
}
