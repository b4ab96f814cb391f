//! The allocator: power-of-two blocks, one free list per size class, a bump pointer into the
//! untouched (sparse, so free) rest of the file, and an intent record that makes every
//! allocation and free crash-consistent.
//!
//! # Layout (offsets from the start of the heap's payload)
//!
//! ```text
//! 0      the heap lock (a robust sync::Mutex<()>)
//! 64     META words (below), the intent record, the free-list heads, the process slots
//! 4096   blocks, from ARENA_START up to TOP; [TOP, CAPACITY) was never touched
//! ```
//!
//! A block of class `k` is `2^k` bytes (64 B to the whole heap) and starts with a 32-byte header:
//!
//! ```text
//! word 0  tag: BLOCK_MAGIC << 16 | state << 8 | k      (state: FREE, ALLOC, RC, NAMED)
//! word 1  FREE: offset of the next free block of class k (0 ends the list); RC: holders word
//! word 2  payload length in bytes (set by the owner)
//! word 3  type fingerprint (set by the owner)
//! ```
//!
//! # Crash consistency
//!
//! Every change of allocator state happens under the heap lock in three steps: write the intent
//! record (what every word will hold afterwards, computed from the current state), then apply it
//! (plain stores of recorded values, so applying twice is the same as once), then clear it. A
//! process that dies anywhere in there leaves either no intent (nothing changed yet, or all of
//! it did) or a complete one, which the next locker, told by `LockError::OwnerDied`, applies again
//! ([`repair`]). The intent's fields are written before its `op` word and a compiler fence keeps
//! the stores in that order, so a killed process (whose stores stop at an instruction boundary)
//! never leaves a half-written intent marked valid.

use super::arena::Arena;
use crate::error::{Error, Result};
use std::sync::atomic::{Ordering, compiler_fence};

/// Where the heap lock lies.
pub(crate) const LOCK_OFF: u64 = 0;
const META: u64 = 64;
const fn meta(i: u64) -> u64 {
    META + 8 * i
}

pub(crate) const MAGIC: u64 = meta(0); // HEAP_MAGIC once initialised
pub(crate) const CAPACITY: u64 = meta(1); // end of the block area
pub(crate) const TOP: u64 = meta(2); // end of the blocks handed out so far
pub(crate) const USED: u64 = meta(3); // bytes in allocated blocks (headers included)
pub(crate) const OBJECTS: u64 = meta(4); // allocated blocks
pub(crate) const FREE_LISTED: u64 = meta(5); // bytes in free lists
pub(crate) const NAMES: u64 = meta(6); // head of the named-object list
pub(crate) const ID: u64 = meta(7); // random heap id (two words)

// The intent record.
const I_OP: u64 = meta(10);
const I_BLOCK: u64 = meta(11);
const I_CLASS: u64 = meta(12);
const I_TAG: u64 = meta(13);
const I_LINK: u64 = meta(14); // POP: the new list head; PUSH: the block's next
const I_TOP: u64 = meta(15);
const I_USED: u64 = meta(16);
const I_OBJECTS: u64 = meta(17);
const I_FREE: u64 = meta(18);

const OP_NONE: u64 = 0;
const OP_POP: u64 = 1; // take the head of a free list
const OP_BUMP: u64 = 2; // take a new block at TOP
const OP_PUSH: u64 = 3; // put a block on a free list

/// Free-list heads, one per class 0..64 (classes below MIN_CLASS stay empty).
const BINS: u64 = meta(32);
const fn bin(k: u64) -> u64 {
    BINS + 8 * k
}
/// Process slots for shared-handle holders: (pid, start time) pairs.
pub(crate) const SLOTS: u64 = bin(64);
/// Number of process slots (one bit each in an RC block's holders word).
pub(crate) const SLOT_COUNT: u64 = 48;
const SLOTS_END: u64 = SLOTS + 16 * SLOT_COUNT;

/// First block.
pub(crate) const ARENA_START: u64 = 4096;
const _: () = assert!(SLOTS_END <= ARENA_START);

pub(crate) const HEAP_MAGIC: u64 = u64::from_le_bytes(*b"MPHEAP01");
const BLOCK_MAGIC: u64 = 0xB10C;
/// Bytes of block header before the payload.
pub(crate) const BLOCK_HEADER: u64 = 32;
/// Smallest block: 64 bytes (32 of payload).
const MIN_CLASS: u32 = 6;
/// Largest class a block can have (far above any real capacity).
const MAX_CLASS: u32 = 46;
/// Freed blocks at least this large give their pages back to the OS.
const PUNCH_MIN: u64 = 64 * 1024;

/// What a block is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum State {
    Free = 1,
    /// Owned by one handle (`HeapBox`) or a container.
    Alloc = 2,
    /// Shared and reference-counted (`HeapRc`): word 1 holds the holders.
    Rc = 3,
    /// A named object or a directory entry: lives as long as the heap.
    Named = 4,
}

fn tag(state: State, class: u32) -> u64 {
    BLOCK_MAGIC << 16 | (state as u64) << 8 | u64::from(class)
}

/// A block's header, decoded and checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockInfo {
    pub(crate) state: State,
    pub(crate) class: u32,
}

impl BlockInfo {
    pub(crate) fn size(&self) -> u64 {
        1 << self.class
    }
    /// Payload bytes the block can hold.
    pub(crate) fn capacity(&self) -> u64 {
        self.size() - BLOCK_HEADER
    }
}

/// The class of a block holding `payload` bytes, if any block can.
pub(crate) fn class_for(payload: u64) -> Option<u32> {
    let need = payload
        .checked_add(BLOCK_HEADER)?
        .checked_next_power_of_two()?;
    let class = need.trailing_zeros().max(MIN_CLASS);
    (class <= MAX_CLASS).then_some(class)
}

/// Initialises a zeroed payload of `len` bytes as an empty heap.
pub(crate) fn format(a: &Arena, id: [u64; 2]) -> Result<()> {
    let capacity = a.len() & !63;
    if capacity < ARENA_START + (1 << MIN_CLASS) {
        return Err(Error::InvalidSize {
            reason: "heap too small (at least 8 KiB)",
        });
    }
    a.store(CAPACITY, capacity)?;
    a.store(TOP, ARENA_START)?;
    a.store(ID, id[0])?;
    a.store(ID + 8, id[1])?;
    a.store(MAGIC, HEAP_MAGIC)
}

/// Checks the words an opener relies on.
pub(crate) fn check_format(a: &Arena) -> Result<()> {
    if a.len() < ARENA_START || a.load(MAGIC)? != HEAP_MAGIC {
        return Err(Error::Corrupted("not a heap (bad magic)"));
    }
    let capacity = a.load(CAPACITY)?;
    if capacity > a.len() || capacity < ARENA_START {
        return Err(Error::Corrupted("heap capacity disagrees with the segment"));
    }
    Ok(())
}

/// Reads and checks the header of the block at `b`: inside `[ARENA_START, TOP)`, aligned, a
/// known tag, and not running past `TOP`.
pub(crate) fn block(a: &Arena, b: u64) -> Result<BlockInfo> {
    let top = a.load(TOP)?.min(a.load(CAPACITY)?);
    if b < ARENA_START || b % 64 != 0 || b >= top {
        return Err(Error::Corrupted("block offset outside the heap"));
    }
    let t = a.load(b)?;
    let class = (t & 0xff) as u32;
    if t >> 16 != BLOCK_MAGIC || !(MIN_CLASS..=MAX_CLASS).contains(&class) {
        return Err(Error::Corrupted("bad block header"));
    }
    let state = match (t >> 8) & 0xff {
        1 => State::Free,
        2 => State::Alloc,
        3 => State::Rc,
        4 => State::Named,
        _ => return Err(Error::Corrupted("bad block state")),
    };
    if b.checked_add(1 << class).is_none_or(|end| end > top) {
        return Err(Error::Corrupted("block runs past the heap top"));
    }
    Ok(BlockInfo { state, class })
}

/// Heap statistics (see [`Heap::stats`](super::Heap::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeapStats {
    /// Bytes the heap can hand out in all (its maximum size less its own metadata).
    pub capacity: u64,
    /// Bytes in allocated blocks, headers and rounding included.
    pub used: u64,
    /// Bytes not in allocated blocks (`capacity - used`).
    pub free: u64,
    /// The largest payload one allocation can get right now.
    pub largest_free: u64,
    /// Allocated blocks (objects, entries and the containers' own tables).
    pub objects: u64,
    /// Bytes of the file that were ever touched (the high-water mark; pages of large freed blocks
    /// are returned to the OS, so resident memory can be less).
    pub touched: u64,
}

/// Reads the statistics (under the heap lock).
pub(crate) fn stats(a: &Arena) -> Result<HeapStats> {
    let capacity = a.load(CAPACITY)?;
    let top = a.load(TOP)?;
    let used = a.load(USED)?;
    let mut largest = capacity.saturating_sub(top);
    largest = if largest >= 64 {
        1u64 << (63 - largest.leading_zeros())
    } else {
        0
    };
    for k in MIN_CLASS..=MAX_CLASS {
        if a.load(bin(u64::from(k)))? != 0 {
            largest = largest.max(1 << k);
        }
    }
    let total = capacity.saturating_sub(ARENA_START);
    Ok(HeapStats {
        capacity: total,
        used,
        free: total.saturating_sub(used),
        largest_free: largest.saturating_sub(BLOCK_HEADER),
        objects: a.load(OBJECTS)?,
        touched: top.saturating_sub(ARENA_START),
    })
}

/// Allocates a block with room for `payload` bytes, in state `state`; the caller holds the heap
/// lock. Returns the block's offset (its payload starts `BLOCK_HEADER` later); words 1-3 are zero.
pub(crate) fn alloc(a: &Arena, payload: u64, state: State) -> Result<u64> {
    let full = || Error::HeapFull {
        requested: usize::try_from(payload).unwrap_or(usize::MAX),
    };
    let class = class_for(payload).ok_or_else(full)?;
    let size = 1u64 << class;
    let k = u64::from(class);
    let head = a.load(bin(k))?;
    let used = a.load(USED)?.wrapping_add(size);
    let objects = a.load(OBJECTS)?.wrapping_add(1);
    let free = a.load(FREE_LISTED)?;
    if head != 0 {
        let info = block(a, head)?;
        if info.state != State::Free || info.class != class {
            return Err(Error::Corrupted(
                "free list holds a block of another state or class",
            ));
        }
        let next = a.load(head + 8)?;
        if next != 0 {
            block(a, next)?;
        }
        write_intent(
            a,
            OP_POP,
            head,
            k,
            tag(state, class),
            next,
            0,
            used,
            objects,
            free.wrapping_sub(size),
        )?;
        crate::crash::point("heap.alloc.after_intent");
        apply(a)?;
        crate::crash::point("heap.alloc.after_apply");
        clear_intent(a)?;
        return Ok(head);
    }
    let top = a.load(TOP)?;
    let capacity = a.load(CAPACITY)?;
    let new_top = top
        .checked_add(size)
        .filter(|&t| t <= capacity)
        .ok_or_else(full)?;
    write_intent(
        a,
        OP_BUMP,
        top,
        k,
        tag(state, class),
        0,
        new_top,
        used,
        objects,
        free,
    )?;
    crate::crash::point("heap.alloc.after_intent");
    apply(a)?;
    crate::crash::point("heap.alloc.after_apply");
    clear_intent(a)?;
    Ok(top)
}

/// Frees block `b`, which must be in one of `allowed` states; the caller holds the heap lock.
/// `punch` returns the pages of a large block to the OS (given the page-aligned range inside it).
pub(crate) fn free(
    a: &Arena,
    b: u64,
    allowed: &[State],
    punch: impl FnOnce(u64, u64),
) -> Result<()> {
    let info = block(a, b)?;
    if !allowed.contains(&info.state) {
        return Err(Error::Corrupted(
            "freeing a block that is free or of another kind",
        ));
    }
    let size = info.size();
    if size >= PUNCH_MIN {
        // The block is still ours (allocated): nobody else reads or writes these pages.
        let start = (b + BLOCK_HEADER).next_multiple_of(4096);
        let end = (b + size) & !4095;
        if end > start {
            punch(start, end - start);
        }
    }
    let k = u64::from(info.class);
    let head = a.load(bin(k))?;
    let used = a.load(USED)?.wrapping_sub(size);
    let objects = a.load(OBJECTS)?.wrapping_sub(1);
    let free = a.load(FREE_LISTED)?.wrapping_add(size);
    write_intent(
        a,
        OP_PUSH,
        b,
        k,
        tag(State::Free, info.class),
        head,
        0,
        used,
        objects,
        free,
    )?;
    crate::crash::point("heap.free.after_intent");
    apply(a)?;
    crate::crash::point("heap.free.after_apply");
    clear_intent(a)
}

/// Changes the state of allocated block `b` (e.g. `Alloc` to `Rc`): one store, the commit point.
pub(crate) fn set_state(a: &Arena, b: u64, state: State) -> Result<()> {
    let info = block(a, b)?;
    a.store(b, tag(state, info.class))
}

#[allow(clippy::too_many_arguments)]
fn write_intent(
    a: &Arena,
    op: u64,
    block: u64,
    class: u64,
    tag: u64,
    link: u64,
    top: u64,
    used: u64,
    objects: u64,
    free: u64,
) -> Result<()> {
    a.store(I_BLOCK, block)?;
    a.store(I_CLASS, class)?;
    a.store(I_TAG, tag)?;
    a.store(I_LINK, link)?;
    a.store(I_TOP, top)?;
    a.store(I_USED, used)?;
    a.store(I_OBJECTS, objects)?;
    a.store(I_FREE, free)?;
    // The fields must reach memory before the op that makes them valid (a killed process stops
    // at an instruction boundary, so program order is what a survivor sees).
    compiler_fence(Ordering::SeqCst);
    a.store(I_OP, op)?;
    compiler_fence(Ordering::SeqCst);
    Ok(())
}

fn clear_intent(a: &Arena) -> Result<()> {
    compiler_fence(Ordering::SeqCst);
    a.store(I_OP, OP_NONE)
}

/// Applies the recorded intent: only stores of recorded values, so it may run any number of
/// times, and its values are bounds-checked first (a peer may have written garbage).
fn apply(a: &Arena) -> Result<()> {
    let op = a.load(I_OP)?;
    let b = a.load(I_BLOCK)?;
    let k = a.load(I_CLASS)?;
    let t = a.load(I_TAG)?;
    let link = a.load(I_LINK)?;
    let capacity = a.load(CAPACITY)?;
    let valid_block = |x: u64| x >= ARENA_START && x % 64 == 0 && x < capacity;
    if !valid_block(b) || !(u64::from(MIN_CLASS)..=u64::from(MAX_CLASS)).contains(&k) {
        return Err(Error::Corrupted("heap intent record out of bounds"));
    }
    if link != 0 && !valid_block(link) || t & 0xff != k {
        return Err(Error::Corrupted("heap intent record out of bounds"));
    }
    match op {
        OP_POP => {
            a.store(bin(k), link)?;
            crate::crash::point("heap.apply.mid");
            a.store(b + 8, 0)?;
            a.store(b, t)?;
        }
        OP_BUMP => {
            let top = a.load(I_TOP)?;
            if top > capacity || top < b {
                return Err(Error::Corrupted("heap intent record out of bounds"));
            }
            a.store(b + 8, 0)?;
            a.store(b, t)?;
            crate::crash::point("heap.apply.mid");
            a.store(TOP, top)?;
        }
        OP_PUSH => {
            a.store(b + 8, link)?;
            a.store(b, t)?;
            crate::crash::point("heap.apply.mid");
            a.store(bin(k), b)?;
        }
        _ => return Err(Error::Corrupted("unknown heap intent")),
    }
    if op != OP_PUSH {
        a.store(b + 16, 0)?;
        a.store(b + 24, 0)?;
    }
    a.store(USED, a.load(I_USED)?)?;
    a.store(OBJECTS, a.load(I_OBJECTS)?)?;
    a.store(FREE_LISTED, a.load(I_FREE)?)
}

/// Completes the intent of a holder that died (called with the lock held after `OwnerDied`).
/// Returns whether there was one.
pub(crate) fn repair(a: &Arena) -> Result<bool> {
    if a.load(I_OP)? == OP_NONE {
        return Ok(false);
    }
    apply(a)?;
    clear_intent(a)?;
    Ok(true)
}

/// Walks every block from `ARENA_START` to `TOP` and checks that the counters and free lists
/// agree with the headers. For tests, the fuzz target and [`Heap::verify`](super::Heap::verify).
pub(crate) fn verify(a: &Arena) -> Result<()> {
    if a.load(I_OP)? != OP_NONE {
        return Err(Error::Corrupted("an intent record is pending"));
    }
    let top = a.load(TOP)?;
    let (mut b, mut used, mut objects, mut free) = (ARENA_START, 0u64, 0u64, 0u64);
    let mut free_per_class = [0u64; 64];
    while b < top {
        let info = block(a, b)?;
        if info.state == State::Free {
            free += info.size();
            free_per_class[info.class as usize] += 1;
        } else {
            used += info.size();
            objects += 1;
        }
        b += info.size();
    }
    if used != a.load(USED)? || objects != a.load(OBJECTS)? || free != a.load(FREE_LISTED)? {
        return Err(Error::Corrupted("heap counters disagree with the blocks"));
    }
    for k in MIN_CLASS..=MAX_CLASS {
        let mut n = 0u64;
        let mut at = a.load(bin(u64::from(k)))?;
        while at != 0 {
            let info = block(a, at)?;
            if info.state != State::Free || info.class != k {
                return Err(Error::Corrupted("free list holds a block that is not free"));
            }
            n += 1;
            if n > free_per_class[k as usize] {
                return Err(Error::Corrupted(
                    "free list longer than the free blocks (cycle?)",
                ));
            }
            at = a.load(at + 8)?;
        }
        if n != free_per_class[k as usize] {
            return Err(Error::Corrupted("a free block is on no free list"));
        }
    }
    Ok(())
}

/// Calls `f` with every block (under the heap lock), stopping at the first corrupt header.
pub(crate) fn for_each_block(
    a: &Arena,
    mut f: impl FnMut(u64, BlockInfo) -> Result<()>,
) -> Result<()> {
    let top = a.load(TOP)?;
    let mut b = ARENA_START;
    while b < top {
        let info = block(a, b)?;
        f(b, info)?;
        b += info.size();
    }
    Ok(())
}
