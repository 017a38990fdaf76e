//! Request-scoped allocation, so that what a request is billed does not depend on what ran before
//! it in the same instance.
//!
//! Fuel counts every guest instruction, the allocator's included, and a general-purpose allocator
//! takes longer or shorter paths depending on its free lists: with instances reused, the same
//! request measured 92,383–95,652 instructions depending on the requests before it. So while a
//! request runs, Rust allocations come from a bump arena that starts at the same address for every
//! request and is emptied when the request ends: identical requests take identical paths. Outside
//! requests (pre-initialization, `ember-ready`) and inside [`permanent`] (the instance's caches),
//! allocations come from the C library's allocator and live on. The C library's own allocations
//! (its environment, preopens) never come here. But the lists the host hands the guest are
//! allocated through this allocator (wit-bindgen's `cabi_realloc`), and the C library frees those
//! it receives — a directory entry's name, a file's bytes — with its own `free`: so every call
//! through std's file system (which is the C library's) runs inside [`permanent`]. Lists received
//! by Rust bindings (the request body, wasi-nn's outputs) stay in the arena.
//!
//! The arena is reserved once per instance ([`reserve`], by `ember-ready`); its pages are backed only
//! once touched. A request that outgrows it continues in the C library's allocator (correct, but
//! its count may then vary), and an instance whose reservation failed (a tight memory limit)
//! allocates as before. The guest is single-threaded: the state is a plain cell.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Bytes reserved for one request's allocations.
const ARENA_BYTES: usize = 8 << 20;

/// The function's allocator (both builds): the request arena, else the C library's.
pub struct RequestArena;

#[global_allocator]
static ALLOCATOR: RequestArena = RequestArena;

/// Where the arena is and how far the current request has filled it.
struct Arena {
    base: Cell<usize>,
    end: Cell<usize>,
    next: Cell<usize>,
    /// Whether allocations go to the arena (a request is running, outside [`permanent`]).
    active: Cell<bool>,
}

// SAFETY: the component is single-threaded (wasm32-wasip2 without threads).
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    base: Cell::new(0),
    end: Cell::new(0),
    next: Cell::new(0),
    active: Cell::new(false),
};

impl Arena {
    fn contains(&self, ptr: *mut u8) -> bool {
        (self.base.get()..self.end.get()).contains(&(ptr as usize))
    }

    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if !self.active.get() {
            return None;
        }
        let start = self.next.get().checked_next_multiple_of(layout.align())?;
        let stop = start.checked_add(layout.size())?;
        if stop > self.end.get() {
            return None;
        }
        self.next.set(stop);
        Some(start as *mut u8)
    }
}

/// Reserves this instance's arena (once; not while a request runs).
pub fn reserve() {
    if ARENA.base.get() != 0 || ARENA.active.get() {
        return;
    }
    // SAFETY: a valid, non-zero-sized layout.
    let base = unsafe { System.alloc(Layout::from_size_align(ARENA_BYTES, 16).unwrap()) };
    if !base.is_null() {
        let base = base as usize;
        ARENA.base.set(base);
        ARENA.next.set(base);
        ARENA.end.set(base + ARENA_BYTES);
    }
}

/// Runs one request's `handle` with its allocations in the arena, then empties it. Nothing the
/// request allocated may outlive it except through [`permanent`].
pub fn request<R>(handle: impl FnOnce() -> R) -> R {
    ARENA.next.set(ARENA.base.get());
    ARENA.active.set(ARENA.base.get() != 0);
    let result = handle();
    ARENA.active.set(false);
    ARENA.next.set(ARENA.base.get());
    result
}

/// Runs `make` with its allocations outside the arena: for what an instance keeps across requests.
pub fn permanent<R>(make: impl FnOnce() -> R) -> R {
    let was = ARENA.active.replace(false);
    let result = make();
    ARENA.active.set(was);
    result
}

// SAFETY: arena blocks are disjoint, aligned and within the reserved block; everything else is the
// system allocator's, to which blocks outside the arena are returned.
unsafe impl GlobalAlloc for RequestArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match ARENA.bump(layout) {
            Some(ptr) => ptr,
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARENA.contains(ptr) {
            // The latest block is given back (a loop that allocates and frees reuses it); others
            // wait for the request's end.
            if ptr as usize + layout.size() == ARENA.next.get() {
                ARENA.next.set(ptr as usize);
            }
            return;
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ARENA.contains(ptr) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let start = ptr as usize;
        if start + layout.size() == ARENA.next.get() && start + new_size <= ARENA.end.get() {
            // The latest block grows or shrinks in place.
            ARENA.next.set(start + new_size);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `new_size` is non-zero (it exceeds a size) and the alignment is the block's.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are valid for `layout.size()` bytes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, moved, layout.size()) };
            unsafe { self.dealloc(ptr, layout) };
        }
        moved
    }
}
