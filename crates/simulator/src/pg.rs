//! A simulated PostgreSQL: the WAL is a sequence of records, each on a timeline and
//! possibly carrying a client write, so a rewind really discards a divergent suffix and a
//! promotion really forks the history.

use hacore::observation::{DataDir, PgObservation, StandbyState, SyncStandbys};
use hacore::{Lsn, NodeName, Timeline, TimelineSwitch};

/// Bytes per WAL record: record `i` ends at LSN `(i + 1) * RECORD`.
pub const RECORD: u64 = 64;

/// One WAL record.
#[derive(Clone, Copy, Debug, Eq)]
pub struct Record {
    /// Timeline it was written on.
    pub timeline: u32,
    /// The client write it carries (None: checkpoint, timeline switch, ...).
    pub write: Option<u64>,
    /// When the primary wrote it (global ms): replication delays are measured from here.
    pub at: u64,
    /// Hash of the whole WAL up to and including this record: two WALs agree up to record
    /// `i` exactly when their chains agree there, so common prefixes are a binary search.
    pub chain: u64,
}

/// Two records are the same record when their chains match (same content, same past).
impl PartialEq for Record {
    fn eq(&self, o: &Self) -> bool {
        self.chain == o.chain
    }
}

fn chain(prev: u64, timeline: u32, write: Option<u64>) -> u64 {
    let mut x = prev ^ 0x9E37_79B9_7F4A_7C15;
    for v in [timeline as u64, write.map_or(u64::MAX, |w| w)] {
        x = (x ^ v).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
    }
    x
}

/// Records per shared chunk (small enough to stay off mmap'd allocations).
const CHUNK: usize = 1024;

/// A WAL: full chunks of records are sealed and shared (cloning a node's WAL for a clone
/// or a rewind, or streaming whole chunks, shares memory instead of copying it); the
/// records after the last full chunk live in an unshared tail.
#[derive(Clone, Debug, Default)]
pub struct Wal {
    sealed: Vec<std::sync::Arc<Vec<Record>>>,
    tail: Vec<Record>,
}

impl Wal {
    fn sealed_len(&self) -> usize {
        self.sealed.len() * CHUNK
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.sealed_len() + self.tail.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.tail.is_empty()
    }

    /// Record `i`.
    pub fn get(&self, i: usize) -> Option<&Record> {
        let s = self.sealed_len();
        if i < s {
            Some(&self.sealed[i / CHUNK][i % CHUNK])
        } else {
            self.tail.get(i - s)
        }
    }

    /// The last record.
    pub fn last(&self) -> Option<&Record> {
        self.tail.last().or_else(|| self.sealed.last().and_then(|c| c.last()))
    }

    fn seal_if_full(&mut self) {
        if self.tail.len() == CHUNK {
            let full = std::mem::replace(&mut self.tail, Vec::with_capacity(CHUNK));
            self.sealed.push(std::sync::Arc::new(full));
        }
    }

    /// Appends a record.
    pub fn push(&mut self, r: Record) {
        self.tail.push(r);
        self.seal_if_full();
    }

    /// Appends `other[start..end]` (with `start == self.len()`), sharing whole chunks.
    pub fn extend_from(&mut self, other: &Wal, start: usize, end: usize) {
        let mut i = start;
        let other_sealed = other.sealed_len();
        while i < end {
            if self.tail.is_empty() && i % CHUNK == 0 && i + CHUNK <= end.min(other_sealed) {
                self.sealed.push(std::sync::Arc::clone(&other.sealed[i / CHUNK]));
                i += CHUNK;
                continue;
            }
            // Copy up to the end of this chunk of `other`, of our tail, or of the range.
            let (slice, base) = if i < other_sealed {
                (&other.sealed[i / CHUNK][..], i - i % CHUNK)
            } else {
                (&other.tail[..], other_sealed)
            };
            let room = CHUNK - self.tail.len();
            let upto = end.min(base + slice.len()).min(i + room);
            self.tail.extend_from_slice(&slice[i - base..upto - base]);
            self.seal_if_full();
            i = upto;
        }
    }

    /// Keeps the first `n` records.
    pub fn truncate(&mut self, n: usize) {
        let s = self.sealed_len();
        if n >= s {
            self.tail.truncate(n - s);
            return;
        }
        let keep = n / CHUNK;
        let partial = self.sealed[keep][..n % CHUNK].to_vec();
        self.sealed.truncate(keep);
        self.tail = partial;
    }

    /// First index in `start..` whose record does not satisfy `pred` (which must hold for a
    /// prefix of that range).
    pub fn partition_point(&self, start: usize, pred: impl Fn(&Record) -> bool) -> usize {
        let (mut lo, mut hi) = (start, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid).expect("in range")) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Whether `self` is a prefix of `other` (O(1): the chain at our last record says it all).
    pub fn is_prefix_of(&self, other: &Wal) -> bool {
        match self.last() {
            None => true,
            Some(r) => other.get(self.len() - 1).is_some_and(|o| o.chain == r.chain),
        }
    }
}

/// `len` records of another cluster's WAL (the `foreign-data` fault): none is any record
/// of this cluster's (their hash chain starts elsewhere), and they are the same for every
/// caller (a function of the index alone), so they are built once per process and shared
/// by chunks: the fault costs no copy of a long WAL.
pub fn foreign_wal(len: usize) -> Wal {
    static BUILT: std::sync::Mutex<Wal> = std::sync::Mutex::new(Wal { sealed: Vec::new(), tail: Vec::new() });
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    while built.len() < len {
        let prev = built.last().map_or(0x0F0E_1647_0F0E_1647, |r| r.chain);
        built.push(Record { timeline: 1, write: None, at: 0, chain: chain(prev, 1, None) });
    }
    let mut wal = Wal::default();
    wal.extend_from(&built, 0, len);
    wal
}

/// What role the instance runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// In recovery.
    Standby,
}

/// One node's PostgreSQL.
#[derive(Clone, Debug, Default)]
pub struct SimPg {
    /// Index of `upstream` among the nodes (kept with it).
    pub upstream_idx: Option<usize>,
    /// System identifier (None: no data directory).
    pub system_id: Option<u64>,
    /// The WAL.
    pub wal: Wal,
    /// Timeline switches in this WAL's ancestry.
    pub history: Vec<TimelineSwitch>,
    /// Current timeline.
    pub timeline: u32,
    /// The newest timeline with a history file in `pg_wal`: a promotion that died after
    /// writing its new timeline's history file leaves one no WAL is on, and PostgreSQL
    /// never reuses it (the next promotion takes the one after).
    pub newest_timeline: u32,
    /// What that history file holds when it is above `timeline`: the switches of the
    /// timeline a promotion that died forked from, then the switch to it. PostgreSQL,
    /// started again with `recovery_target_timeline = latest`, recovers towards it
    /// (hashell's placeholders make the files contiguous): it follows no other line, and
    /// its next promotion forks from it.
    pub dead_history: Vec<TimelineSwitch>,
    /// Postmaster running.
    pub running: bool,
    /// Role while running; role of the data when stopped.
    pub role: Option<Role>,
    /// Configured upstream.
    pub upstream: Option<NodeName>,
    /// Streaming right now.
    pub streaming: bool,
    /// `synchronous_standby_names` in effect.
    pub sync_standbys: SyncStandbys,
    /// Replication slots.
    pub slots: Vec<String>,
    /// Frozen: running but not answering (hung).
    pub hung: bool,
    /// Records replayed (a standby replays what it received with a delay).
    pub replayed: usize,
    /// `pg_control`'s minimum recovery point, in records: after a rewind or a clone the
    /// data is consistent only once replay reaches it, and until then a standby accepts
    /// no connections ("the database system is not yet accepting connections").
    pub min_recovery: usize,
}

impl SimPg {
    /// End of the WAL.
    pub fn end(&self) -> Lsn {
        Lsn(self.wal.len() as u64 * RECORD)
    }

    /// Whether it accepts writes.
    pub fn writable(&self) -> bool {
        self.running && !self.hung && self.role == Some(Role::Primary)
    }

    /// Whether it has the record `write` at `lsn`.
    pub fn has(&self, lsn: Lsn, write: u64) -> bool {
        let idx = (lsn.0 / RECORD).checked_sub(1);
        idx.and_then(|i| self.wal.get(i as usize)).is_some_and(|r| r.write == Some(write))
    }

    /// Appends a record on the current timeline at time `at`; returns its end LSN.
    pub fn append(&mut self, write: Option<u64>, at: u64) -> Lsn {
        let prev = self.wal.last().map_or(0, |r| r.chain);
        self.wal.push(Record { timeline: self.timeline, write, at, chain: chain(prev, self.timeline, write) });
        self.replayed = self.wal.len();
        self.end()
    }

    /// A copy of this data directory as a clone makes it: a standby with all of the WAL,
    /// consistent once it has replayed from the backup's checkpoint (modelled as the last
    /// hundredth of the WAL, at least one record) to the end of the backup.
    pub fn copy(&self) -> SimPg {
        let len = self.wal.len();
        SimPg {
            system_id: self.system_id,
            wal: self.wal.clone(),
            history: self.history.clone(),
            timeline: self.timeline,
            // `pg_basebackup -X stream` (as hashell clones) copies no file of `pg_wal`: the
            // WAL stream writes the current timeline's history file alone, so no file a
            // promotion that died left comes along.
            newest_timeline: self.timeline,
            role: Some(Role::Standby),
            replayed: len.saturating_sub((len / 100).max(1)),
            min_recovery: len,
            ..SimPg::default()
        }
    }

    /// Whether its data is consistent (replay reached the minimum recovery point).
    pub fn consistent(&self) -> bool {
        self.replayed >= self.min_recovery
    }

    /// The timeline a promotion asked for `asked` creates: PostgreSQL never reuses one, it
    /// takes the one after the newest it knows of (hashell places history files to skip to
    /// the one asked for).
    pub fn promotion_timeline(&self, asked: u32) -> u32 {
        asked.max(self.timeline + 1).max(self.newest_timeline + 1)
    }

    /// The timeline PostgreSQL recovers towards, and where it forks off its own line (the
    /// end of the WAL at the promotion that died): the newest history file's timeline
    /// when a promotion died after writing it.
    pub fn dead_target(&self) -> Option<(u32, Lsn)> {
        let fork = self.dead_history.last()?;
        (self.newest_timeline > self.timeline).then_some((self.newest_timeline, fork.lsn))
    }

    /// Whether `timeline` is on this WAL's line (its own or one it forked from).
    pub fn on_line(&self, timeline: u32) -> bool {
        self.timeline == timeline || self.history.iter().any(|h| h.timeline.0 == timeline)
    }

    /// The history a promotion to `timeline` gives: PostgreSQL forks it from the timeline
    /// it recovers towards, at the end of the WAL.
    fn forked_history(&self, timeline: u32) -> Vec<TimelineSwitch> {
        let (parent, mut history) = match self.dead_target() {
            Some((t, _)) => (t, self.dead_history.clone()),
            None => (self.timeline, self.history.clone()),
        };
        debug_assert!(parent < timeline);
        history.push(TimelineSwitch { timeline: Timeline(parent), lsn: self.end() });
        history
    }

    /// A promotion to `timeline` that died after writing the new timeline's history file.
    pub fn promotion_died(&mut self, timeline: u32) {
        self.dead_history = self.forked_history(timeline);
        self.newest_timeline = timeline;
    }

    /// Promotes: a fork to `timeline` at the end of the WAL.
    pub fn promote(&mut self, timeline: u32, at: u64) {
        self.history = self.forked_history(timeline);
        self.dead_history.clear();
        self.timeline = timeline;
        self.newest_timeline = self.newest_timeline.max(timeline);
        self.role = Some(Role::Primary);
        self.upstream = None;
        self.streaming = false;
        self.append(None, at);
    }

    /// After a rewind hashell removes the history files of timelines above the data's:
    /// what a promotion that died left behind would hold PostgreSQL to that timeline.
    pub fn drop_dead_history(&mut self) {
        self.newest_timeline = self.newest_timeline.min(self.timeline);
        self.dead_history.clear();
    }

    /// Length of the common prefix of two WALs (binary search on the hash chains).
    pub fn common_prefix(a: &Wal, b: &Wal) -> usize {
        let (mut lo, mut hi) = (0, a.len().min(b.len()));
        // Invariant: the first `lo` records agree; from `hi` on they do not.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let same = a.get(mid - 1).map(|r| r.chain) == b.get(mid - 1).map(|r| r.chain);
            if same {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// What the shell would observe.
    pub fn observe(&self, standbys: Vec<StandbyState>) -> PgObservation {
        let responsive = self.running && !self.hung && (self.role != Some(Role::Standby) || self.consistent());
        PgObservation {
            data: self.system_id.map_or(DataDir::Empty, |system_id| DataDir::Present { system_id }),
            running: self.running,
            responsive,
            in_recovery: self.role.map(|r| r == Role::Standby),
            timeline: Timeline(self.timeline),
            history: self.history.clone(),
            newest_timeline: Timeline(self.newest_timeline),
            flush_lsn: self.end(),
            replay_lsn: Lsn(self.replayed as u64 * RECORD),
            upstream: if self.running { self.upstream.clone() } else { None },
            streaming: self.running && self.streaming,
            sync_standbys: self.sync_standbys.clone(),
            standbys: if self.writable() { standbys } else { Vec::new() },
            slots: self.slots.clone(),
            rewind_capable: true,
            pending_restart: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_share_and_copy_on_write() {
        let mut a = SimPg { timeline: 1, ..Default::default() };
        for w in 0..10_000 {
            a.append(Some(w), 0);
        }
        let mut b = SimPg::default();
        b.wal.extend_from(&a.wal, 0, 9_000);
        assert_eq!(b.wal.len(), 9_000);
        assert!(b.wal.is_prefix_of(&a.wal));
        let mut c = a.clone();
        c.append(Some(99_999), 0);
        assert_eq!(a.wal.len(), 10_000, "appending to a clone leaves the original alone");
        assert_eq!(SimPg::common_prefix(&a.wal, &c.wal), 10_000);
        c.wal.truncate(4_096);
        assert_eq!(c.wal.len(), 4_096);
        c.append(Some(5), 0);
        assert_eq!(SimPg::common_prefix(&a.wal, &c.wal), 4_096);
        assert_eq!(a.wal.partition_point(0, |r| r.write.unwrap_or(0) < 7_000), 7_000);
        // Unaligned streaming, then more.
        let mut d = SimPg::default();
        d.wal.extend_from(&a.wal, 0, 1_500);
        d.wal.extend_from(&a.wal, 1_500, 10_000);
        assert!(d.wal.is_prefix_of(&a.wal) && d.wal.len() == 10_000);
        assert_eq!(d.wal.get(9_999).map(|r| r.write), Some(Some(9_999)));
    }

    #[test]
    fn common_prefix_by_chain() {
        let mut a = SimPg { timeline: 1, ..Default::default() };
        for w in 0..100 {
            a.append(Some(w), 0);
        }
        let mut b = a.clone();
        assert_eq!(SimPg::common_prefix(&a.wal, &b.wal), 100);
        a.append(Some(1_000), 0);
        b.append(Some(2_000), 0);
        b.append(Some(2_001), 0);
        assert_eq!(SimPg::common_prefix(&a.wal, &b.wal), 100);
        let mut c = a.clone();
        c.wal.truncate(40);
        assert_eq!(SimPg::common_prefix(&c.wal, &b.wal), 40);
        assert!(c.wal.is_prefix_of(&b.wal) && !a.wal.is_prefix_of(&b.wal));
        assert_eq!(SimPg::common_prefix(&Wal::default(), &b.wal), 0);
        // Same content on another timeline is another record.
        let mut d = SimPg { timeline: 2, ..Default::default() };
        d.append(Some(0), 0);
        assert_eq!(SimPg::common_prefix(&d.wal, &b.wal), 0);
    }
}
