//! A tiny fork-join pool for the decode kernels: `threads − 1` workers that spin briefly
//! between jobs instead of sleeping.
//!
//! A decode step of SmolLM2-135M makes 121 matrix–vector products of 30–200 µs each, with small
//! LibTorch ops in between. Handing each product to a general pool (rayon) costs a futex wake-up
//! and a context switch per product — measured at about a quarter of a 2-thread decode step on a
//! 2-core VM. Here the calling thread computes chunk 0 itself while each worker, still spinning
//! from the previous product, picks its chunk up within a microsecond. A worker that sees no job
//! for [`SPIN`] parks (no CPU used while a node is idle) and is unparked by the next job.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins before parking.
const SPIN: Duration = Duration::from_micros(500);

const IDLE: u8 = 0;
const READY: u8 = 1;
const DONE: u8 = 2;
const PANICKED: u8 = 3;

type Job = *const (dyn Fn(usize) + Sync);

struct Mailbox {
    state: AtomicU8,
    sleeping: AtomicBool,
    /// Written by the caller only while `state` is IDLE/DONE, read by the worker only while it
    /// is READY (the Release store / Acquire load of `state` orders the two).
    job: UnsafeCell<(Option<Job>, usize)>,
}

// SAFETY: access to `job` is serialised by `state` as described on the field.
unsafe impl Sync for Mailbox {}
unsafe impl Send for Mailbox {}

struct Worker {
    mail: Arc<Mailbox>,
    thread: Thread,
    handle: Option<JoinHandle<()>>,
}

/// Fork-join over a fixed number of threads (the caller counts as one).
pub struct KernelPool {
    workers: Vec<Worker>,
    shutdown: Arc<AtomicBool>,
}

impl KernelPool {
    /// A pool running jobs on `threads` threads in all (`threads − 1` spawned workers).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let mail = Arc::new(Mailbox {
                state: AtomicU8::new(IDLE),
                sleeping: AtomicBool::new(false),
                job: UnsafeCell::new((None, 0)),
            });
            let (m, stop) = (mail.clone(), shutdown.clone());
            let handle = thread::Builder::new().name(format!("brainmesh-qmm-{i}")).spawn(move || work(&m, &stop))?;
            workers.push(Worker { mail, thread: handle.thread().clone(), handle: Some(handle) });
        }
        Ok(KernelPool { workers, shutdown })
    }

    /// Threads a job is split over (workers + the caller).
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(0) .. f(threads − 1)`, `f(0)` on the calling thread, and returns when all have
    /// finished. A panic in a worker's chunk is re-raised here.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: the pointer's lifetime is erased, but every worker is done with it (state
        // DONE or PANICKED, observed below with Acquire) before this function returns.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
        for (i, w) in self.workers.iter().enumerate() {
            // SAFETY: the worker's state is IDLE (set by the previous run), so it does not read.
            unsafe { *w.mail.job.get() = (Some(job), i + 1) };
            w.mail.state.store(READY, Ordering::SeqCst);
            if w.mail.sleeping.load(Ordering::SeqCst) {
                w.thread.unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut panicked = false;
        for w in &self.workers {
            let mut spins = 0u32;
            loop {
                match w.mail.state.load(Ordering::Acquire) {
                    DONE => break,
                    PANICKED => {
                        panicked = true;
                        break;
                    }
                    _ => {
                        spins += 1;
                        if spins < 20_000 {
                            std::hint::spin_loop();
                        } else {
                            // The worker lost its core (more threads than cores): let it run.
                            thread::yield_now();
                        }
                    }
                }
            }
            w.mail.state.store(IDLE, Ordering::Release);
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        assert!(!panicked, "a kernel worker panicked");
    }
}

fn work(mail: &Mailbox, stop: &AtomicBool) {
    loop {
        let mut since = Instant::now();
        let mut spins = 0u32;
        while mail.state.load(Ordering::Acquire) != READY {
            if stop.load(Ordering::Acquire) {
                return;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            if since.elapsed() < SPIN {
                continue;
            }
            mail.sleeping.store(true, Ordering::SeqCst);
            if mail.state.load(Ordering::SeqCst) != READY && !stop.load(Ordering::SeqCst) {
                thread::park();
            }
            mail.sleeping.store(false, Ordering::SeqCst);
            since = Instant::now();
        }
        // SAFETY: state is READY: the caller wrote the job before its Release store and waits
        // for DONE before touching it (or what it points to) again.
        let (job, index) = unsafe { *mail.job.get() };
        let ok = match job {
            // SAFETY: the caller keeps the closure alive until it sees DONE/PANICKED.
            Some(f) => catch_unwind(AssertUnwindSafe(|| unsafe { (*f)(index) })).is_ok(),
            None => true,
        };
        mail.state.store(if ok { DONE } else { PANICKED }, Ordering::Release);
    }
}

impl Drop for KernelPool {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for w in &mut self.workers {
            w.thread.unpark();
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_chunk_runs_once_per_job_across_many_jobs() {
        let pool = KernelPool::new(3).unwrap();
        assert_eq!(pool.threads(), 3);
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        for round in 0..2000 {
            pool.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            if round == 1000 {
                // Let the workers park, then check a parked worker is woken by the next job.
                thread::sleep(SPIN * 4);
            }
        }
        for h in &hits {
            assert_eq!(h.load(Ordering::Relaxed), 2000);
        }
    }

    #[test]
    fn writes_made_by_workers_are_visible_to_the_caller() {
        let pool = KernelPool::new(2).unwrap();
        let mut out = vec![0u64; 2];
        for k in 1..500u64 {
            let cells: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
            pool.run(&|i| cells[i].store((k as usize) * (i + 1), Ordering::Relaxed));
            for (o, c) in out.iter_mut().zip(&cells) {
                *o = c.load(Ordering::Relaxed) as u64;
            }
            assert_eq!(out, vec![k, 2 * k]);
        }
    }

    #[test]
    fn a_panicking_chunk_is_reraised_and_the_pool_keeps_working() {
        let pool = KernelPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(&|i| assert!(i != 1, "chunk 1 fails"))));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_one_thread_pool_runs_on_the_caller() {
        let pool = KernelPool::new(1).unwrap();
        let me = thread::current().id();
        pool.run(&|i| {
            assert_eq!(i, 0);
            assert_eq!(thread::current().id(), me);
        });
    }
}
