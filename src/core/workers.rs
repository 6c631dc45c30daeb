//! Independent tasks (SLQ probes) spread over worker threads, one task per
//! worker at a time.
//!
//! Each worker runs inside a rayon pool of its own with a single thread, so an
//! operator's internal parallelism (faer's GEMM, rayon loops) runs
//! sequentially there: on a 2-core machine two dense Hessian-vector products
//! side by side beat one product split over both cores (a single-thread f32
//! GEMM runs at ~150 GFLOP/s, both cores together at ~265 rather than 300),
//! and one worker's memory-bound basis sweeps overlap the other's GEMMs.
//!
//! Only the calling ("driving") thread talks to the [`Monitor`], as its
//! contract requires: it polls `check` while the workers run and raises a
//! flag they test between units of their work, and it reports progress as
//! tasks finish. Results come back in task order whichever worker ran them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::monitor::Monitor;

/// How often the driving thread looks up from waiting: to poll the monitor,
/// and to take part in broadcasts of the pool it belongs to (every thread of
/// a rayon pool must run a broadcast job before `broadcast` returns, so a
/// thread waiting outside rayon would hold up everyone else's).
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Runs `task(i, check, state)` for every `i < count` on `workers` threads and
/// returns the results in order of `i`. `check` fails once the run is
/// stopping (the monitor said stop, or another task failed); a task calls it
/// between units of its work. `state` is one per worker, reused across its
/// tasks (a buffer, say). The error returned is that of the lowest-numbered
/// task that failed on its own, else the monitor's if it stopped the run.
pub fn run_tasks<S, R, F>(
    workers: usize,
    count: usize,
    what: &str,
    monitor: &dyn Monitor,
    task: F,
) -> Result<Vec<R>>
where
    S: Default,
    R: Send,
    F: Fn(usize, &dyn Fn() -> Result<()>, &mut S) -> Result<R> + Sync,
{
    let next = AtomicUsize::new(0);
    let stopping = AtomicBool::new(false);
    let (sender, receiver) = channel::<(usize, Result<R>)>();
    let mut results: Vec<Option<R>> = (0..count).map(|_| None).collect();
    let mut stopped_by_monitor: Option<Error> = None;
    let mut failed: Option<(usize, Error)> = None;
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let sender = sender.clone();
            let (next, stopping, task) = (&next, &stopping, &task);
            scope.spawn(move || {
                let work = || {
                    let check = || {
                        if stopping.load(Ordering::Relaxed) {
                            Err(Error::Interrupted)
                        } else {
                            Ok(())
                        }
                    };
                    let mut state = S::default();
                    while !stopping.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let result = task(i, &check, &mut state);
                        let ok = result.is_ok();
                        if sender.send((i, result)).is_err() || !ok {
                            break;
                        }
                    }
                };
                // Without a pool of its own (thread creation refused) the
                // worker still runs, its inner parallelism then on rayon's
                // global pool.
                match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                    Ok(pool) => pool.install(work),
                    Err(_) => work(),
                }
            });
        }
        drop(sender);
        let mut done = 0;
        loop {
            match receiver.recv_timeout(POLL_INTERVAL) {
                Ok((i, Ok(value))) => {
                    results[i] = Some(value);
                    done += 1;
                    monitor.report(what, done, count);
                }
                Ok((i, Err(err))) => {
                    stopping.store(true, Ordering::Relaxed);
                    // `Interrupted` is a task obeying the flag, not a cause.
                    let own = !matches!(err, Error::Interrupted);
                    if own && failed.as_ref().is_none_or(|(j, _)| i < *j) {
                        failed = Some((i, err));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Only this thread's own queue (where broadcasts land): stealing
            // could start someone else's long job here.
            rayon::yield_local();
            if !stopping.load(Ordering::Relaxed) {
                if let Err(err) = monitor.check() {
                    stopping.store(true, Ordering::Relaxed);
                    stopped_by_monitor = Some(err);
                }
            }
        }
    });
    if let Some((_, err)) = failed {
        return Err(err);
    }
    if let Some(err) = stopped_by_monitor {
        return Err(err);
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| Error::Operator("a worker thread ended early".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::monitor::Silent;
    use std::sync::Mutex;

    #[test]
    fn results_come_back_in_task_order_each_task_on_a_single_thread_pool() {
        let out = run_tasks(3, 20, "test", &Silent, |i, check, runs: &mut usize| {
            check()?;
            *runs += 1;
            // Inner parallelism must see one thread (sequential GEMMs).
            Ok((i * i, rayon::current_num_threads()))
        })
        .unwrap();
        let squares: Vec<usize> = out.iter().map(|r| r.0).collect();
        assert_eq!(squares, (0..20).map(|i| i * i).collect::<Vec<_>>());
        assert!(out.iter().all(|r| r.1 == 1));
    }

    #[test]
    fn a_failing_task_stops_the_others_and_its_error_is_returned() {
        let started = AtomicUsize::new(0);
        let err = run_tasks(2, 1000, "test", &Silent, |i, check, _: &mut ()| {
            started.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                return Err(Error::Operator("task 3 failed".into()));
            }
            for _ in 0..50 {
                check()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(i)
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            Error::Operator("task 3 failed".into()).to_string()
        );
        assert!(
            started.load(Ordering::Relaxed) < 100,
            "the others did not stop"
        );
    }

    /// Says stop after `after` polls, and counts the reports.
    struct StopAfter {
        after: usize,
        polls: AtomicUsize,
        reports: Mutex<Vec<usize>>,
    }

    impl Monitor for StopAfter {
        fn check(&self) -> Result<()> {
            if self.polls.fetch_add(1, Ordering::Relaxed) >= self.after {
                Err(Error::Interrupted)
            } else {
                Ok(())
            }
        }
        fn report(&self, _what: &str, done: usize, _total: usize) {
            self.reports.lock().unwrap().push(done);
        }
    }

    #[test]
    fn the_monitor_stops_long_tasks_between_their_steps_and_sees_progress() {
        let monitor = StopAfter {
            after: 10,
            polls: AtomicUsize::new(0),
            reports: Mutex::new(Vec::new()),
        };
        let start = std::time::Instant::now();
        let err = run_tasks(2, 4, "test", &monitor, |i, check, _: &mut ()| {
            // Task 0 is quick; the others would take ~100 s without a stop.
            let steps = if i == 0 { 1 } else { 100_000 };
            for _ in 0..steps {
                check()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(i)
        })
        .unwrap_err();
        assert!(matches!(err, Error::Interrupted));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(*monitor.reports.lock().unwrap(), vec![1]);
    }

    #[test]
    fn waiting_for_the_workers_does_not_hold_up_broadcasts_in_the_drivers_pool() {
        // The driver waits on a thread of a 2-thread pool while another
        // caller broadcasts to that pool (as faer call sites do to clear
        // the AVX upper state): the broadcast must not wait for the tasks.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let released = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                pool.install(|| {
                    run_tasks(1, 1, "test", &Silent, |_, check, _: &mut ()| {
                        let start = std::time::Instant::now();
                        while !released.load(Ordering::Relaxed)
                            && start.elapsed() < Duration::from_secs(3)
                        {
                            check()?;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Ok(())
                    })
                })
            });
            std::thread::sleep(Duration::from_millis(100));
            let start = std::time::Instant::now();
            pool.broadcast(|_| ());
            let waited = start.elapsed();
            released.store(true, Ordering::Relaxed);
            assert!(
                waited < Duration::from_secs(1),
                "broadcast waited {waited:?}"
            );
        });
    }
}
