//! The bridge between long core computations and the Python caller.
//!
//! The GIL is released for the whole computation. Ctrl-C is noticed on the
//! thread that called into hessx (CPython runs signal handlers only on the main
//! thread), which takes the GIL back every ~50 ms to run them:
//! - Rust-side operators: the work runs in hessx's thread pool while the calling
//!   thread waits and polls; an exception from a handler sets a flag that the
//!   work sees at its next `Monitor::check`.
//! - Python callables: the work runs on the calling thread itself, so the user
//!   function is always called from the thread that called hessx (JAX and
//!   PyTorch keep per-thread state), holding the GIL only for the call; `check`
//!   then polls signals directly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::core::error::{Error, Result};
use crate::core::monitor::Monitor;

const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub struct PyMonitor {
    progress: bool,
    /// True when `check` runs on the calling thread and may poll signals itself.
    polls_signals: bool,
    cancelled: AtomicBool,
    last_poll: Mutex<Instant>,
    /// The exception a signal handler raised (normally KeyboardInterrupt).
    raised: Mutex<Option<PyErr>>,
}

impl PyMonitor {
    fn new(progress: bool, polls_signals: bool) -> Self {
        PyMonitor {
            progress,
            polls_signals,
            cancelled: AtomicBool::new(false),
            last_poll: Mutex::new(Instant::now()),
            raised: Mutex::new(None),
        }
    }

    fn store_raised(&self, err: PyErr) {
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
        self.cancelled.store(true, Ordering::SeqCst);
    }

    fn take_raised(&self) -> Option<PyErr> {
        self.raised.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn poll_due(&self) -> bool {
        let mut last = self.last_poll.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < POLL_INTERVAL {
            return false;
        }
        *last = Instant::now();
        true
    }
}

impl Monitor for PyMonitor {
    fn check(&self) -> Result<()> {
        if self.polls_signals && self.poll_due() {
            if let Err(err) = Python::attach(|py| py.check_signals()) {
                self.store_raised(err);
            }
        }
        if self.cancelled.load(Ordering::SeqCst) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    fn report(&self, what: &str, done: usize, total: usize) {
        if !self.progress {
            return;
        }
        let width = 30;
        let filled = (done.min(total) * width)
            .checked_div(total)
            .unwrap_or(width);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r{what:>10} [{}{}] {done}/{total}",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        let _ = stderr.flush();
    }
}

/// Where a computation runs: see the module documentation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// In hessx's pool, the calling thread polling Ctrl-C meanwhile.
    Pool,
    /// On the calling thread (operators that call back into Python).
    CallingThread,
}

/// Run `work` with the GIL released and Ctrl-C polled, and turn its error into
/// the right Python exception: the one a signal handler raised when there is
/// one, else the core error's mapping. A handler's exception is raised even
/// when the work finished anyway (Ctrl-C in its last moments): running the
/// handler consumed the signal, so dropping its exception would lose it.
pub fn run_detached<T, F>(py: Python<'_>, driver: Driver, progress: bool, work: F) -> PyResult<T>
where
    F: FnOnce(&PyMonitor) -> Result<T> + Send,
    T: Send,
{
    let monitor = PyMonitor::new(progress, driver == Driver::CallingThread);
    let result = match driver {
        Driver::CallingThread => py.detach(|| work(&monitor)),
        Driver::Pool => run_in_pool_polling(py, &monitor, work),
    };
    if progress {
        eprintln!();
    }
    match (result, monitor.take_raised()) {
        (_, Some(raised)) => Err(raised),
        (Ok(value), None) => Ok(value),
        (Err(err), None) => Err(super::errors::to_py(err)),
    }
}

fn run_in_pool_polling<T, F>(py: Python<'_>, monitor: &PyMonitor, work: F) -> Result<T>
where
    F: FnOnce(&PyMonitor) -> Result<T> + Send,
    T: Send,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    py.detach(move || {
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let out = super::pool::install(|| work(monitor));
                let _ = done_tx.send(());
                out
            });
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(POLL_INTERVAL)
            {
                if let Err(err) = Python::attach(|py| py.check_signals()) {
                    monitor.store_raised(err);
                }
            }
            worker
                .join()
                .unwrap_or_else(|_| Err(Error::Operator("hessx worker thread panicked".into())))
        })
    })
}
