//! Gives freed heap memory back to the operating system.
//!
//! glibc's allocator returns freed memory to the system only from the top of a heap; pages
//! freed below a live allocation stay resident. A server that opened 10,000 streams at once
//! keeps the memory of everything those requests briefly held (parsed bodies, handler
//! state) even after it is freed, interleaved as it is with the streams' long-lived state.
//! `malloc_trim(0)` walks every arena and releases each run of whole free pages
//! (`madvise(MADV_DONTNEED)`), which is what allocators such as jemalloc do on their own
//! after a decay time. [`Trimmer`] does it periodically from its own thread.
//!
//! Elsewhere than Linux with glibc (musl, macOS, Windows) this does nothing: those
//! allocators have no such call and return memory by themselves.
//!
//! This trims glibc's malloc only. The `agentry` binary gives Rust's allocations to jemalloc
//! (decision 132), which returns freed pages by itself; there the trim covers what C
//! libraries allocate through glibc (SQLite, libpq).

use std::ops::ControlFlow;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Asks the allocator to return its free pages to the system. Returns whether it released
/// any. glibc locks each arena in turn while it walks it, so a thread allocating from that
/// arena waits meanwhile (tens of microseconds to a few milliseconds, depending on how much
/// is free).
#[must_use]
pub fn release_free_memory() -> bool {
    imp::release()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    #[allow(unsafe_code)]
    pub fn release() -> bool {
        // SAFETY: `malloc_trim` takes no pointer and touches only the allocator's own state,
        // under the allocator's locks; it may be called from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn release() -> bool {
        false
    }
}

/// What one trim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    /// Whether the allocator released any pages.
    pub released: bool,
    /// How long the call took.
    pub took: Duration,
}

/// A thread that calls [`release_free_memory`] at a fixed interval, until its report says
/// to stop (for the life of the process in `agentry serve`).
pub struct Trimmer;

impl Trimmer {
    /// Starts the thread (named `agentry-trim`); `report` receives each trim's outcome (for
    /// logging) and says whether to go on.
    ///
    /// # Errors
    /// When the thread cannot be created.
    pub fn spawn(
        every: Duration,
        mut report: impl FnMut(Trim) -> ControlFlow<()> + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("agentry-trim".to_owned())
            .stack_size(64 * 1024)
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let started = Instant::now();
                    let released = release_free_memory();
                    let trim = Trim {
                        released,
                        took: started.elapsed(),
                    };
                    if report(trim).is_break() {
                        return;
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::mpsc;

    #[test]
    fn freed_pages_go_back_to_the_system() {
        // Many small blocks (below the mmap threshold, so they come from the heap), then all
        // but the last freed: the last one pins the heap's top, so only a trim can return
        // the pages below it.
        let mut blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 16 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        let released = release_free_memory();
        drop(last);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released, "64 MiB were freed below a live block");
        } else {
            assert!(!released);
        }
    }

    #[test]
    fn the_trimmer_reports_each_trim_until_told_to_stop() {
        let (tx, rx) = mpsc::channel();
        let mut seen = 0;
        let thread = Trimmer::spawn(Duration::from_millis(5), move |trim| {
            seen += 1;
            let _ = tx.send(trim);
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        thread.join().unwrap();
        let trims: Vec<Trim> = rx.try_iter().collect();
        assert_eq!(trims.len(), 2, "two trims, then the thread ended");
        assert!(trims.iter().all(|t| t.took < Duration::from_secs(5)));
    }
}
