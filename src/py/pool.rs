//! The Rust thread pool behind `hessx.set_num_threads` / `get_num_threads`.
//!
//! rayon's global pool can be sized only once per process, so hessx owns a pool
//! it can replace, and every core call runs inside it (faer's `Par::rayon(0)`
//! follows the pool it runs in).

use std::sync::{Arc, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

fn build(n_threads: usize) -> Result<Arc<ThreadPool>, String> {
    ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .thread_name(|i| format!("hessx-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn current() -> Result<Arc<ThreadPool>, String> {
    if let Some(pool) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Ok(pool.clone());
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = slot.as_ref() {
        return Ok(pool.clone());
    }
    let pool = build(0)?;
    *slot = Some(pool.clone());
    Ok(pool)
}

/// Replace the pool with one of `n_threads` threads (0 = one per core).
pub fn set_num_threads(n_threads: usize) -> Result<(), String> {
    let pool = build(n_threads)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
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
