//! The bridge between long core computations and the Python caller.
//!
//! The GIL is released for the whole computation, which runs in hessx's thread
//! pool (in a private one of the same size when it calls back into Python, see
//! `pool::install_private`). Meanwhile the thread that called into hessx takes the GIL back every
//! ~50 ms to let Ctrl-C handlers run (CPython runs them only on the main
//! thread); an exception from a handler sets a flag that the work sees at its
//! next `Monitor::check`. The calling thread also runs the jobs the work sends
//! it through [`CallingThread`]: a Python callable's products, so that the user
//! function is always called from the thread that called hessx (JAX and
//! PyTorch keep per-thread state), holding the GIL only for the call.
//!
//! Running everything in hessx's own pool (never rayon's global one) also
//! keeps a child made by `fork` working: hessx rebuilds its pool there, while
//! the global pool's threads would be missing and its work would wait forever.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::core::error::{Error, Result};
use crate::core::monitor::Monitor;

const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub struct PyMonitor {
    progress: bool,
    cancelled: AtomicBool,
    last_poll: Mutex<Instant>,
    /// The exception a signal handler raised (normally KeyboardInterrupt).
    raised: Mutex<Option<PyErr>>,
}

impl PyMonitor {
    fn new(progress: bool) -> Self {
        PyMonitor {
            progress,
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

/// Where a single product (`RustOperator.matvec`) runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// In hessx's pool, with the GIL released.
    Pool,
    /// On the calling thread, holding the GIL (operators that call back into Python).
    CallingThread,
}

enum Message<'env> {
    Job(Box<dyn FnOnce() + Send + 'env>),
    Done,
}

/// Lets work running in hessx's pool run closures on the thread that called
/// hessx, which serves them while it waits (see the module documentation).
pub struct CallingThread<'env> {
    sender: Sender<Message<'env>>,
}

impl<'env> CallingThread<'env> {
    /// Runs `job` on the calling thread and returns its result.
    pub fn run<R: Send + 'env>(&self, job: impl FnOnce() -> R + Send + 'env) -> Result<R> {
        let stopped = || Error::Operator("the calling thread no longer serves hessx".into());
        let (reply, answer) = channel();
        self.sender
            .send(Message::Job(Box::new(move || {
                let _ = reply.send(job());
            })))
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())
    }
}

/// Run `work` in hessx's pool with the GIL released, Ctrl-C polled and the
/// calling thread serving [`CallingThread`] jobs, and turn its error into the
/// right Python exception: the one a signal handler raised when there is one,
/// else the core error's mapping. A handler's exception is raised even when
/// the work finished anyway (Ctrl-C in its last moments): running the handler
/// consumed the signal, so dropping its exception would lose it.
///
/// Work that waits for [`CallingThread`] jobs runs in a pool of its own
/// (`pool::install_private`), since a thread blocked outside rayon must not
/// be one of hessx's shared pool.
pub fn run_detached<'env, T, F>(
    py: Python<'_>,
    progress: bool,
    uses_calling_thread: bool,
    work: F,
) -> PyResult<T>
where
    F: FnOnce(&PyMonitor, &CallingThread<'env>) -> Result<T> + Send,
    T: Send,
{
    let monitor = PyMonitor::new(progress);
    let result = run_in_pool_serving(py, &monitor, uses_calling_thread, work);
    if progress {
        eprintln!();
    }
    match (result, monitor.take_raised()) {
        (_, Some(raised)) => Err(raised),
        (Ok(value), None) => Ok(value),
        (Err(err), None) => Err(super::errors::to_py(err)),
    }
}

fn run_in_pool_serving<'env, T, F>(
    py: Python<'_>,
    monitor: &PyMonitor,
    private_pool: bool,
    work: F,
) -> Result<T>
where
    F: FnOnce(&PyMonitor, &CallingThread<'env>) -> Result<T> + Send,
    T: Send,
{
    let (sender, receiver) = channel::<Message<'env>>();
    py.detach(move || {
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let caller = CallingThread { sender };
                let run = || work(monitor, &caller);
                let out = if private_pool {
                    super::pool::install_private(run)
                } else {
                    super::pool::install(run)
                };
                let _ = caller.sender.send(Message::Done);
                out
            });
            loop {
                match receiver.recv_timeout(POLL_INTERVAL) {
                    Ok(Message::Job(job)) => job(),
                    Ok(Message::Done) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {}
                }
                if monitor.poll_due() {
                    if let Err(err) = Python::attach(|py| py.check_signals()) {
                        monitor.store_raised(err);
                    }
                }
            }
            worker
                .join()
                .unwrap_or_else(|_| Err(Error::Operator("hessx worker thread panicked".into())))
        })
    })
}
