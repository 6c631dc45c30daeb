//! The Rust thread pool behind `hessx.set_num_threads` / `get_num_threads`.
//!
//! rayon's global pool can be sized only once per process, so hessx owns a pool
//! it can replace, and every core call runs inside it (faer's `Par::rayon(0)`
//! follows the pool it runs in).

use std::sync::{Arc, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// The pool and the id of the process that built it: a child made by `fork`
/// (Python's `ProcessPoolExecutor` default on Linux before 3.14) inherits
/// the pool but none of its threads, so work sent to it would wait forever;
/// the child builds its own pool instead.
static POOL: RwLock<Option<(u32, Arc<ThreadPool>)>> = RwLock::new(None);

fn build(n_threads: usize) -> Result<Arc<ThreadPool>, String> {
    ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .thread_name(|i| format!("hessx-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn current() -> Result<Arc<ThreadPool>, String> {
    let pid = std::process::id();
    if let Some((owner, pool)) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if *owner == pid {
            return Ok(pool.clone());
        }
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    match slot.take() {
        Some((owner, pool)) if owner == pid => {
            *slot = Some((owner, pool.clone()));
            return Ok(pool);
        }
        // Inherited through fork: its threads do not exist here. Dropping it
        // would signal threads that are not there; leak it instead.
        Some((_, stale)) => std::mem::forget(stale),
        None => {}
    }
    let threads = previous_size_for_child();
    let pool = build(threads)?;
    *slot = Some((pid, pool.clone()));
    Ok(pool)
}

/// A forked child keeps the size the parent chose (0 = one per core).
fn previous_size_for_child() -> usize {
    CHOSEN_SIZE.load(std::sync::atomic::Ordering::Relaxed)
}

static CHOSEN_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Replace the pool with one of `n_threads` threads (0 = one per core).
pub fn set_num_threads(n_threads: usize) -> Result<(), String> {
    let pool = build(n_threads)?;
    CHOSEN_SIZE.store(n_threads, std::sync::atomic::Ordering::Relaxed);
    let previous = POOL
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .replace((std::process::id(), pool));
    if let Some((owner, stale)) = previous {
        if owner != std::process::id() {
            std::mem::forget(stale);
        }
    }
    Ok(())
}

pub fn num_threads() -> usize {
    current().map(|p| p.current_num_threads()).unwrap_or(1)
}

/// Run `work` inside hessx's pool (or on the calling thread if no pool can be built).
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match current() {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
}

/// Run `work` inside a new pool of hessx's size, built for this call: for
/// work whose thread blocks outside rayon while it waits for the calling
/// thread (Python callables). Blocked there, it would stall anything else in
/// hessx's pool that needs every thread at once (a broadcast), and nested
/// calls from the callable would each hold one of hessx's threads.
pub fn install_private<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match build(num_threads()) {
        Ok(pool) => pool.install(work),
        Err(_) => install(work),
    }
}
