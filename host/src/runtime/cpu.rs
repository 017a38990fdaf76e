//! CPU time spent running a future: the thread CPU clock is read around every poll, so time the
//! invocation spends parked (awaiting I/O, queued) is not counted, wherever it is polled.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Wraps a future and adds up the CPU time of its polls.
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    spent: Duration,
}

impl<F: Future> CpuTimed<F> {
    /// Times `inner`.
    pub fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let before = thread_cpu_time();
        let poll = this.inner.as_mut().poll(cx);
        this.spent += thread_cpu_time().saturating_sub(before);
        poll.map(|output| (output, this.spent))
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
