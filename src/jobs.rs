//! A fixed-size pool for independent jobs (files of a batch, objects under a prefix): a
//! few run at once on scoped threads, a failure is kept for its job and never stops the
//! others.
//!
//! Batch commands want exactly this and nothing more: no work stealing or async runtime,
//! each job already parallel inside (the engine's threads, S3's parts), and every failure
//! reported afterwards against its job. One pool serves the local and the S3 batches, so
//! they order and report failures the same way.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work(i)` for every `i` in `0..n`, at most `concurrency` at once (0 counts as 1;
/// never more threads than jobs), jobs started in index order. Returns the failures sorted
/// by job index; an empty vector means every job succeeded.
///
/// `work` runs on scoped threads, so it may borrow from the caller. A panic in `work`
/// propagates to the caller once every thread has stopped, as `std::thread::scope` does.
pub fn run<E, F>(n: usize, concurrency: usize, work: F) -> Vec<(usize, E)>
where
    E: Send,
    F: Fn(usize) -> Result<(), E> + Sync,
{
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..concurrency.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if let Err(e) = work(i) {
                        // A poisoned lock means another job panicked; that panic is what
                        // the caller sees, so this failure can go.
                        if let Ok(mut f) = failures.lock() {
                            f.push((i, e));
                        }
                    }
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap_or_default();
    f.sort_by_key(|(i, _)| *i);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_and_failures_come_back_in_job_order() {
        for concurrency in [0, 1, 3, 64] {
            let ran: Vec<AtomicUsize> = (0..50).map(|_| AtomicUsize::new(0)).collect();
            let failures = run(50, concurrency, |i| {
                ran[i].fetch_add(1, Ordering::SeqCst);
                if i % 7 == 3 {
                    Err(format!("job {i}"))
                } else {
                    Ok(())
                }
            });
            assert!(ran.iter().all(|r| r.load(Ordering::SeqCst) == 1));
            let want: Vec<(usize, String)> = (0..50)
                .filter(|i| i % 7 == 3)
                .map(|i| (i, format!("job {i}")))
                .collect();
            assert_eq!(failures, want, "concurrency {concurrency}");
        }
    }

    #[test]
    fn at_most_concurrency_jobs_run_at_once() {
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let failures: Vec<(usize, ())> = run(40, 3, |_| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
        assert!(failures.is_empty());
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=3).contains(&peak), "peak {peak}");
    }

    #[test]
    fn no_jobs_is_no_failures() {
        assert!(run::<(), _>(0, 4, |_| unreachable!()).is_empty());
    }
}
