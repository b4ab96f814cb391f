//! `Dict<K, V>`: a hash map of serde keys and values in a heap, Python's `Manager().dict()`.
//!
//! Sixteen shards, each behind its own robust lock, so writers of keys in different shards do
//! not wait for each other. A shard is an open-addressing table (linear probing) of entry
//! offsets; an entry is an immutable block `[hash, key length, value length, key, value]`. Keys
//! are compared by their serialised bytes.
//!
//! # Crash consistency
//!
//! A change of a slot also changes the shard's counters, so it goes through the shard's intent
//! record: write the new entry in full, record (slot, new slot value, new len, new tombstone
//! count) and then the op word, apply (stores of recorded values), clear. Growing records the new
//! table the same way. The next locker after an `OwnerDied` applies a pending intent again (it is
//! idempotent) without scanning anything. Entries and tables replaced by a change are freed after
//! the intent is cleared, so a holder killed there leaks them but never frees twice. Every key
//! therefore holds its old or its new value, never a mix.
//!
//! A new value whose encoding fits its entry's block (at most 64 bytes: every `u64`, and most
//! small values) is written over the old one in place, with no allocation: the intent records the
//! new bytes (`OP_VALUE`), so a holder killed mid-copy is completed the same way.
//!
//! # Lock-free reads
//!
//! Each shard has a seqlock version ([`seqlock`](super::seqlock)): writers make it odd for the
//! whole of a locked change (slots, in-place values and the entries they free), and `get` /
//! `contains_key` read without the lock: copy the entry out (every offset bounds-checked), check
//! the version did not move, only then deserialize. A writer killed mid-change leaves the version
//! odd; readers give up after a few tries and read under the lock, whose `OwnerDied` repair
//! completes the intent and ends the write. Readers never block writers.

use super::alloc::{self, BLOCK_HEADER, State};
use super::entry;
use super::{Heap, Named, seqlock};
use crate::error::{Error, Result};
use crate::shm::ShmSafe;
use crate::sync::{Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering, compiler_fence};

const SHARDS: usize = 16;
const EMPTY: u64 = 0;
const TOMB: u64 = 1;

const OP_NONE: u64 = 0;
const OP_SLOT: u64 = 1; // table[slot] = value, len, tombs
const OP_TABLE: u64 = 2; // table = value, len, tombs
const OP_VALUE: u64 = 3; // entry slot's value = data[..value], len, tombs

/// Longest encoded value written in place (the intent's data words).
const INPLACE_MAX: usize = 64;
/// Lock-free read attempts before a reader falls back to the lock.
const READ_TRIES: u32 = 64;

#[repr(C)]
struct Shard {
    lock: Mutex<()>,
    /// Block `[cap, slots...]`, or 0 before the first insert.
    table: AtomicU64,
    len: AtomicU64,
    tombs: AtomicU64,
    i_op: AtomicU64,
    i_slot: AtomicU64,
    i_value: AtomicU64,
    i_len: AtomicU64,
    i_tombs: AtomicU64,
    i_data: [AtomicU64; INPLACE_MAX / 8],
    /// Seqlock version: odd while a writer changes the shard.
    seq: AtomicU64,
}

#[repr(C)]
#[doc(hidden)]
pub struct DictRoot<K, V> {
    shards: [Shard; SHARDS],
    _type: PhantomData<fn() -> (K, V)>,
}

// SAFETY: `#[repr(C)]` of robust mutexes and atomics (valid for every bit pattern; every offset
// read from them is bounds-checked before use), no pointers, no Drop.
unsafe impl<K, V> ShmSafe for DictRoot<K, V> {}

/// A shared dictionary of serde keys and values in a [`Heap`]: Python's `Manager().dict()`,
/// without the server process.
///
/// `get` returns an owned copy. Iteration order is unspecified (Python's dict keeps insertion
/// order; this one does not). [`update`](Dict::update) is an atomic read-modify-write (Python's
/// `d[k] += 1` is not), and [`lock`](Dict::lock) runs several operations under one lock.
///
/// ```
/// let d = multiproc::heap::Dict::<String, u64>::new()?;
/// d.insert(&"a".to_owned(), &1)?;
/// d.update(&"a".to_owned(), |v| *v.get_or_insert(0) += 1)?;
/// assert_eq!(d.get(&"a".to_owned())?, Some(2));
/// assert_eq!(d.len()?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Dict<K, V> {
    root: Named<DictRoot<K, V>>,
    name: String,
}

/// A locked shard, with the heap its entries live in.
struct Locked<'a> {
    heap: &'a Heap,
    shard: &'a Shard,
    /// Whether this holder made the seqlock version odd (ended when it drops).
    writing: std::cell::Cell<bool>,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Before `_guard` unlocks (fields drop after this body).
        if self.writing.get() {
            seqlock::write_end(&self.shard.seq);
        }
    }
}

/// The shard of a key with hash `h` (its top bits; the table uses the low ones).
fn shard_of(h: u64) -> usize {
    (h >> 60) as usize % SHARDS
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = crate::shm::header::fnv1a(&[bytes]);
    // FNV's low bits mix poorly; finish like splitmix64.
    h ^= h >> 31;
    h = h.wrapping_mul(0x7fb5_d329_728e_a185);
    h ^ (h >> 27)
}

impl Shard {
    fn repair(&self, heap: &Heap) -> Result<()> {
        if self.i_op.load(Ordering::Relaxed) != OP_NONE {
            apply(self, heap)?;
            self.i_op.store(OP_NONE, Ordering::Relaxed);
        }
        if self.seq.load(Ordering::Relaxed) & 1 == 1 {
            seqlock::write_end(&self.seq);
        }
        Ok(())
    }
}

/// Applies the shard's recorded intent (stores of recorded values: idempotent).
fn apply(s: &Shard, heap: &Heap) -> Result<()> {
    let op = s.i_op.load(Ordering::Relaxed);
    let value = s.i_value.load(Ordering::Relaxed);
    match op {
        OP_SLOT => {
            let (table, cap) = table_of(heap, s.table.load(Ordering::Relaxed))?;
            let slot = s.i_slot.load(Ordering::Relaxed);
            if slot >= cap {
                return Err(Error::Corrupted("dict intent slot out of range"));
            }
            heap.arena()
                .store(table + BLOCK_HEADER + 8 + 8 * slot, value)?;
        }
        OP_TABLE => {
            if value != 0 {
                table_of(heap, value)?;
            }
            s.table.store(value, Ordering::Relaxed);
        }
        OP_VALUE => {
            let e = s.i_slot.load(Ordering::Relaxed);
            let a = heap.arena();
            let info = alloc::block(a, e)?;
            let klen = a.load(e + BLOCK_HEADER + 8)?;
            let total = klen.saturating_add(value).saturating_add(24);
            if info.state != State::Alloc || value > INPLACE_MAX as u64 || total > info.capacity() {
                return Err(Error::Corrupted(
                    "dict in-place intent does not fit its entry",
                ));
            }
            let mut data = [0u8; INPLACE_MAX];
            for (chunk, w) in data.chunks_exact_mut(8).zip(&s.i_data) {
                chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            // In two halves, with a crash point between: a writer killed mid-copy is tested.
            let (first, second) = data[..value as usize].split_at(value as usize / 2);
            let at = e + BLOCK_HEADER + 24 + klen;
            a.write_bytes(at, first)?;
            crate::crash::point("heap.dict.value.mid");
            a.write_bytes(at + first.len() as u64, second)?;
            a.store(e + BLOCK_HEADER + 16, value)?;
            a.store(e + 16, total)?;
        }
        _ => return Err(Error::Corrupted("unknown dict intent")),
    }
    crate::crash::point("heap.dict.apply.mid");
    s.len
        .store(s.i_len.load(Ordering::Relaxed), Ordering::Relaxed);
    s.tombs
        .store(s.i_tombs.load(Ordering::Relaxed), Ordering::Relaxed);
    Ok(())
}

/// Checks a table block and returns it with its capacity (0 for no table).
fn table_of(heap: &Heap, table: u64) -> Result<(u64, u64)> {
    if table == 0 {
        return Ok((0, 0));
    }
    let a = heap.arena();
    let info = alloc::block(a, table)?;
    let cap = a.load(table + BLOCK_HEADER)?;
    if info.state != State::Alloc
        || !cap.is_power_of_two()
        || cap.saturating_mul(8).saturating_add(8) > info.capacity()
    {
        return Err(Error::Corrupted("dict table is not a valid block"));
    }
    Ok((table, cap))
}

/// Where a key is or would go: (slot, its entry block and contents if present).
type Found = (u64, Option<(u64, Entry)>);

/// An entry, read and checked.
struct Entry {
    hash: u64,
    bytes: entry::Bytes,
    klen: usize,
}

impl Entry {
    fn read(heap: &Heap, e: u64) -> Result<Entry> {
        let bytes = entry::read(heap, e)?;
        let Some(header) = bytes.get(..24) else {
            return Err(Error::Corrupted("dict entry too short"));
        };
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&header[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        let (hash, klen, vlen) = (word(0), word(1), word(2));
        if klen.checked_add(vlen).and_then(|n| n.checked_add(24)) != Some(bytes.len() as u64) {
            return Err(Error::Corrupted("dict entry lengths disagree"));
        }
        Ok(Entry {
            hash,
            bytes,
            klen: klen as usize,
        })
    }
    fn key(&self) -> &[u8] {
        &self.bytes[24..24 + self.klen]
    }
    fn value(&self) -> &[u8] {
        &self.bytes[24 + self.klen..]
    }
    /// The value of `found`, if any, decoded.
    #[inline]
    fn decode_value<V: DeserializeOwned>(found: Option<Entry>) -> Result<Option<V>> {
        found.map(|e| entry::decode(e.value())).transpose()
    }
}

/// Finds `key` (hash `h`) in `shard`: `(slot of the key or where to insert it, entry if
/// present)`. Only reads (every offset checked), so it also serves lock-free readers.
fn find(heap: &Heap, shard: &Shard, h: u64, key: &[u8]) -> Result<Option<Found>> {
    let (table, cap) = table_of(heap, shard.table.load(Ordering::Relaxed))?;
    if cap == 0 {
        return Ok(None);
    }
    let a = heap.arena();
    let mut first_free = None;
    for probe in 0..cap {
        let i = (h.wrapping_add(probe)) & (cap - 1);
        let v = a.load(Locked::slot_word(table, i))?;
        match v {
            EMPTY => return Ok(Some((first_free.unwrap_or(i), None))),
            TOMB => {
                first_free.get_or_insert(i);
            }
            // Most probes of another key stop at its hash, one load (checked like any).
            e if a.load(e.saturating_add(BLOCK_HEADER))? != h => {}
            e => {
                let entry = Entry::read(heap, e)?;
                if entry.hash == h && entry.key() == key {
                    return Ok(Some((i, Some((e, entry)))));
                }
            }
        }
    }
    Ok(first_free.map(|i| (i, None)))
}

/// The entry under `key` (hash `h`), read without the shard lock: a copy that a seqlock
/// validation vouches for. `None` if every try met a writer (or a dead writer's odd version).
fn read_lock_free(heap: &Heap, shard: &Shard, h: u64, key: &[u8]) -> Option<Result<Option<Entry>>> {
    for attempt in 0..READ_TRIES {
        if let Some(v) = seqlock::begin(&shard.seq) {
            let found = find(heap, shard, h, key);
            if seqlock::validate(&shard.seq, v) {
                return Some(found.map(|f| f.and_then(|(_, e)| e.map(|(_, e)| e))));
            }
        }
        if attempt < READ_TRIES / 2 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    None
}

impl Locked<'_> {
    fn table(&self) -> Result<(u64, u64)> {
        table_of(self.heap, self.shard.table.load(Ordering::Relaxed))
    }

    fn slot_word(table: u64, i: u64) -> u64 {
        table + BLOCK_HEADER + 8 + 8 * i
    }

    /// Finds `key`: `(slot of the key or where to insert it, entry if present)`.
    fn find(&self, h: u64, key: &[u8]) -> Result<Option<Found>> {
        find(self.heap, self.shard, h, key)
    }

    fn get_bytes(&self, h: u64, key: &[u8]) -> Result<Option<Entry>> {
        Ok(self
            .find(h, key)?
            .and_then(|(_, found)| found.map(|(_, e)| e)))
    }

    /// Makes the seqlock version odd until this holder drops (lock-free readers retry).
    fn begin_write(&self) {
        if !self.writing.replace(true) {
            seqlock::write_begin(&self.shard.seq);
        }
    }

    /// Records and applies an intent, then clears it.
    fn commit(&self, op: u64, slot: u64, value: u64, len: u64, tombs: u64) -> Result<()> {
        self.begin_write();
        let s = self.shard;
        let r = Ordering::Relaxed;
        s.i_slot.store(slot, r);
        s.i_value.store(value, r);
        s.i_len.store(len, r);
        s.i_tombs.store(tombs, r);
        compiler_fence(Ordering::SeqCst);
        s.i_op.store(op, r);
        compiler_fence(Ordering::SeqCst);
        crate::crash::point("heap.dict.after_intent");
        apply(s, self.heap)?;
        compiler_fence(Ordering::SeqCst);
        crate::crash::point("heap.dict.after_apply");
        s.i_op.store(OP_NONE, r);
        Ok(())
    }

    /// Rebuilds the table with room for more live entries, dropping tombstones.
    fn grow(&self) -> Result<()> {
        let (old, old_cap) = self.table()?;
        let a = self.heap.arena();
        let mut live = Vec::new();
        for i in 0..old_cap {
            let e = a.load(Self::slot_word(old, i))?;
            if e != EMPTY && e != TOMB {
                live.push((e, Entry::read(self.heap, e)?.hash));
            }
        }
        let cap = (live.len() as u64 + 1)
            .saturating_mul(2)
            .max(8)
            .next_power_of_two();
        let table = self.heap.alloc_block(8 + 8 * cap, State::Alloc)?;
        a.store(table + BLOCK_HEADER, cap)?;
        for i in 0..cap {
            a.store(Self::slot_word(table, i), EMPTY)?;
        }
        // `cap > live.len()`, so every probe below reaches an empty slot.
        for &(e, h) in &live {
            let mut j = h & (cap - 1);
            while a.load(Self::slot_word(table, j))? != EMPTY {
                j = (j + 1) & (cap - 1);
            }
            a.store(Self::slot_word(table, j), e)?;
        }
        self.commit(OP_TABLE, 0, table, live.len() as u64, 0)?;
        if old != 0 {
            self.heap.free_block(old, &[State::Alloc])?;
        }
        Ok(())
    }

    /// Inserts or replaces; returns the old value's bytes.
    fn insert(&self, h: u64, key: &[u8], value: &[u8]) -> Result<Option<Entry>> {
        let mut found = self.find(h, key)?;
        if let Some((_, Some((e, old)))) = &found {
            if self.overwrite(*e, old, value)? {
                return Ok(found.and_then(|(_, f)| f.map(|(_, old)| old)));
            }
        }
        let (len, tombs) = (
            self.shard.len.load(Ordering::Relaxed),
            self.shard.tombs.load(Ordering::Relaxed),
        );
        let (_, cap) = self.table()?;
        if len
            .saturating_add(tombs)
            .saturating_add(1)
            .saturating_mul(4)
            > cap.saturating_mul(3)
        {
            self.grow()?;
            found = self.find(h, key)?;
        }
        let (len, tombs) = (
            self.shard.len.load(Ordering::Relaxed),
            self.shard.tombs.load(Ordering::Relaxed),
        );
        let Some((slot, found)) = found else {
            return Err(Error::Corrupted("dict table full after growing"));
        };
        let (klen, vlen) = (key.len() as u64, value.len() as u64);
        let e = entry::write(
            self.heap,
            &[
                &h.to_le_bytes(),
                &klen.to_le_bytes(),
                &vlen.to_le_bytes(),
                key,
                value,
            ],
        )?;
        let (table, _) = self.table()?;
        let was = self.heap.arena().load(Self::slot_word(table, slot))?;
        let (new_len, new_tombs) = match &found {
            Some(_) => (len, tombs),
            None if was == TOMB => (len.saturating_add(1), tombs.saturating_sub(1)),
            None => (len.saturating_add(1), tombs),
        };
        if let Err(err) = self.commit(OP_SLOT, slot, e, new_len, new_tombs) {
            let _ = entry::free(self.heap, e);
            return Err(err);
        }
        match found {
            Some((old, old_entry)) => {
                entry::free(self.heap, old)?;
                Ok(Some(old_entry))
            }
            None => Ok(None),
        }
    }

    /// Writes `value` over the value of entry `e` (whose current contents are `old`) if it fits
    /// the block and the intent's data words; false, changing nothing, if it does not.
    fn overwrite(&self, e: u64, old: &Entry, value: &[u8]) -> Result<bool> {
        let capacity = alloc::block(self.heap.arena(), e)?.capacity();
        let total = 24 + old.klen as u64 + value.len() as u64;
        if value.len() > INPLACE_MAX || total > capacity {
            return Ok(false);
        }
        let s = self.shard;
        let mut data = [0u8; INPLACE_MAX];
        data[..value.len()].copy_from_slice(value);
        for (w, chunk) in s.i_data.iter().zip(data.chunks_exact(8)) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            w.store(word, Ordering::Relaxed);
        }
        let (len, tombs) = (
            s.len.load(Ordering::Relaxed),
            s.tombs.load(Ordering::Relaxed),
        );
        self.commit(OP_VALUE, e, value.len() as u64, len, tombs)?;
        Ok(true)
    }

    fn remove(&self, h: u64, key: &[u8]) -> Result<Option<Entry>> {
        let Some((slot, Some((old, old_entry)))) = self.find(h, key)? else {
            return Ok(None);
        };
        let (len, tombs) = (
            self.shard.len.load(Ordering::Relaxed),
            self.shard.tombs.load(Ordering::Relaxed),
        );
        self.commit(
            OP_SLOT,
            slot,
            TOMB,
            len.saturating_sub(1),
            tombs.saturating_add(1),
        )?;
        entry::free(self.heap, old)?;
        Ok(Some(old_entry))
    }

    fn clear(&self) -> Result<()> {
        let (table, cap) = self.table()?;
        if table == 0 {
            return Ok(());
        }
        let a = self.heap.arena();
        let entries = (0..cap)
            .map(|i| a.load(Self::slot_word(table, i)))
            .collect::<Result<Vec<u64>>>()?;
        self.commit(OP_TABLE, 0, 0, 0, 0)?;
        for e in entries.into_iter().filter(|&e| e != EMPTY && e != TOMB) {
            entry::free(self.heap, e)?;
        }
        self.heap.free_block(table, &[State::Alloc])
    }

    fn entries(&self) -> Result<Vec<Entry>> {
        let (table, cap) = self.table()?;
        let a = self.heap.arena();
        let mut out = Vec::new();
        for i in 0..cap {
            let e = a.load(Self::slot_word(table, i))?;
            if e != EMPTY && e != TOMB {
                out.push(Entry::read(self.heap, e)?);
            }
        }
        Ok(out)
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    container_constructors!(
        Dict,
        "dict",
        "empty ",
        "empty",
        "its key or value type differs"
    );

    /// The dict named `name` in `heap`, created empty if it does not exist.
    pub fn in_heap(heap: &Heap, name: &str) -> Result<Self> {
        let root = heap.find_or_construct(name, || DictRoot {
            shards: std::array::from_fn(|_| Shard {
                lock: Mutex::new(()),
                table: AtomicU64::new(0),
                len: AtomicU64::new(0),
                tombs: AtomicU64::new(0),
                i_op: AtomicU64::new(0),
                i_slot: AtomicU64::new(0),
                i_value: AtomicU64::new(0),
                i_len: AtomicU64::new(0),
                i_tombs: AtomicU64::new(0),
                i_data: std::array::from_fn(|_| AtomicU64::new(0)),
                seq: AtomicU64::new(0),
            }),
            _type: PhantomData,
        })?;
        Ok(Dict {
            root,
            name: name.to_owned(),
        })
    }

    fn lock_shard(&self, i: usize) -> Result<Locked<'_>> {
        let heap = self.root.heap();
        let shard = &self.root.shards[i];
        let guard = entry::lock(&shard.lock, || shard.repair(heap))?;
        Ok(Locked {
            heap,
            shard,
            writing: std::cell::Cell::new(false),
            _guard: guard,
        })
    }

    /// Runs `f` on `key`'s shard, locked, with the key's hash and encoding.
    fn with_key<R>(
        &self,
        key: &K,
        f: impl FnOnce(&Locked<'_>, u64, &[u8]) -> Result<R>,
    ) -> Result<R> {
        entry::encoded(key, |k| {
            let h = hash(k);
            f(&self.lock_shard(shard_of(h))?, h, k)
        })
    }

    /// Inserts `value` under `key`; returns the value it replaced.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        Entry::decode_value(entry::encoded(value, |v| {
            self.with_key(key, |l, h, k| l.insert(h, k, v))
        })?)
    }

    /// The entry under `key`, read without the lock (see "Lock-free reads" in `dict.rs`), or
    /// under it if writers kept getting in the way.
    fn read(&self, key: &K) -> Result<Option<Entry>> {
        entry::encoded(key, |k| {
            let h = hash(k);
            let (heap, shard) = (self.root.heap(), &self.root.shards[shard_of(h)]);
            match read_lock_free(heap, shard, h, k) {
                Some(found) => found,
                None => self.lock_shard(shard_of(h))?.get_bytes(h, k),
            }
        })
    }

    /// A copy of the value under `key`. Does not wait for writers (unless one keeps the shard
    /// busy, or died mid-write: then it reads under the lock, repairing first).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        Entry::decode_value(self.read(key)?)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        Ok(self.read(key)?.is_some())
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        Entry::decode_value(self.with_key(key, |l, h, k| l.remove(h, k))?)
    }

    /// Reads, changes and writes back the value under `key` atomically (no other process sees
    /// or changes it in between): `f` gets `None` for an absent key; leaving `None` removes it.
    /// Returns what `f` returns. `f` runs under the key's shard lock: it must not use this dict
    /// (the lock is not reentrant; that would wait forever).
    pub fn update<R>(&self, key: &K, f: impl FnOnce(&mut Option<V>) -> R) -> Result<R> {
        self.with_key(key, |l, h, k| update_locked(l, h, k, f))
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        let mut n = 0;
        for i in 0..SHARDS {
            n += self.lock_shard(i)?.shard.len.load(Ordering::Relaxed) as usize;
        }
        Ok(n)
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.lock()?.clear()
    }

    /// Every (key, value) pair, copied while every shard is locked (a consistent snapshot).
    pub fn iter(&self) -> Result<std::vec::IntoIter<(K, V)>> {
        Ok(self.lock()?.to_vec()?.into_iter())
    }

    /// Every key (a snapshot).
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(self.iter()?.map(|(k, _)| k).collect())
    }

    /// Every value (a snapshot).
    pub fn values(&self) -> Result<Vec<V>> {
        Ok(self.iter()?.map(|(_, v)| v).collect())
    }

    /// Locks every shard (in order, so two callers cannot deadlock) and returns a guard on which
    /// several operations run as one: nobody else sees the dict in between. While it lives, use
    /// the dict only through the guard (its locks are not reentrant).
    pub fn lock(&self) -> Result<DictGuard<'_, K, V>> {
        let shards = (0..SHARDS)
            .map(|i| self.lock_shard(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(DictGuard {
            shards,
            _type: PhantomData,
        })
    }

    /// The heap it lives in.
    pub fn heap(&self) -> &Heap {
        self.root.heap()
    }
}

fn update_locked<V: Serialize + DeserializeOwned, R>(
    l: &Locked<'_>,
    h: u64,
    k: &[u8],
    f: impl FnOnce(&mut Option<V>) -> R,
) -> Result<R> {
    let mut v = Entry::decode_value(l.get_bytes(h, k)?)?;
    let r = f(&mut v);
    match v {
        Some(v) => {
            entry::encoded(&v, |v| l.insert(h, k, v))?;
        }
        None => {
            l.remove(h, k)?;
        }
    }
    Ok(r)
}

/// Every shard of a [`Dict`] locked: operations on it are one atomic step for other processes.
pub struct DictGuard<'a, K, V> {
    shards: Vec<Locked<'a>>,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictGuard<'_, K, V> {
    /// Runs `f` on `key`'s (locked) shard with the key's hash and encoding.
    fn with_key<R>(
        &self,
        key: &K,
        f: impl FnOnce(&Locked<'_>, u64, &[u8]) -> Result<R>,
    ) -> Result<R> {
        entry::encoded(key, |k| {
            let h = hash(k);
            f(&self.shards[shard_of(h)], h, k)
        })
    }

    /// As [`Dict::get`].
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        Entry::decode_value(self.with_key(key, |l, h, k| l.get_bytes(h, k))?)
    }

    /// As [`Dict::insert`].
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        Entry::decode_value(entry::encoded(value, |v| {
            self.with_key(key, |l, h, k| l.insert(h, k, v))
        })?)
    }

    /// As [`Dict::remove`].
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        Entry::decode_value(self.with_key(key, |l, h, k| l.remove(h, k))?)
    }

    /// As [`Dict::update`].
    pub fn update<R>(&self, key: &K, f: impl FnOnce(&mut Option<V>) -> R) -> Result<R> {
        self.with_key(key, |l, h, k| update_locked(l, h, k, f))
    }

    /// As [`Dict::len`].
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|l| l.shard.len.load(Ordering::Relaxed) as usize)
            .sum()
    }

    /// As [`Dict::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As [`Dict::clear`].
    pub fn clear(&self) -> Result<()> {
        self.shards.iter().try_for_each(Locked::clear)
    }

    /// Every (key, value) pair.
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for l in &self.shards {
            for e in l.entries()? {
                out.push((entry::decode(e.key())?, entry::decode(e.value())?));
            }
        }
        Ok(out)
    }
}

container_handle!(Dict<K,V>);
