//! How a long computation hears "stop" and reports progress.
//!
//! The core never talks to Python. The binding layer implements [`Monitor`] so
//! that `check` polls Ctrl-C (at most every ~50 ms) and `report` draws a progress
//! bar. Algorithms call both only from the driving thread, between units of work
//! (one operator product, one probe, one restart), never from inside rayon tasks.

use crate::core::error::Result;

pub trait Monitor: Sync {
    /// `Err(Error::Interrupted)` (or another error) to stop the computation.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// `done` of `total` units finished; `what` names the phase ("lanczos", "slq").
    fn report(&self, _what: &str, _done: usize, _total: usize) {}
}

/// A monitor that never stops and reports nothing: for tests and pure-Rust callers.
pub struct Silent;

impl Monitor for Silent {}
