//! The process's own metrics, read from `/proc/self` on each scrape (Linux; elsewhere they
//! are left out): resident memory, CPU time and recent CPU use, threads, open files, and the
//! tasks alive on the server's tokio runtimes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use agentry_domain::metrics::{Family, Kind, MetricsSource};

/// Linux reports CPU time in clock ticks of `USER_HZ`, which the kernel ABI fixes at 100.
const TICKS_PER_SECOND: f64 = 100.0;

/// Runtimes whose tasks are counted (the main one and each HTTP worker's).
#[derive(Clone, Default)]
pub struct Runtimes(Arc<Mutex<Vec<tokio::runtime::Handle>>>);

impl Runtimes {
    /// Adds the runtime the caller runs on (at most 64 are kept).
    pub fn register_current(&self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if all.len() >= 64 {
                all.remove(0);
            }
            all.push(handle);
        }
    }

    fn alive_tasks(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|h| h.metrics().num_alive_tasks())
            .sum()
    }
}

/// The process source.
pub struct ProcessMetrics {
    runtimes: Runtimes,
    /// The previous CPU reading (wall clock, CPU seconds), for the recent CPU use.
    previous: Mutex<(Instant, f64)>,
}

impl ProcessMetrics {
    /// A source counting the tasks of `runtimes`.
    pub fn new(runtimes: Runtimes) -> Self {
        Self {
            runtimes,
            previous: Mutex::new((Instant::now(), cpu_seconds().unwrap_or(0.0))),
        }
    }
}

/// The value of a `Key:   N …` line of `/proc/self/status`.
fn status_field(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// User plus system CPU time of the process, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15, that is 11 and 12 after the name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

impl MetricsSource for ProcessMetrics {
    fn collect(&self) -> Vec<Family> {
        let mut out = Vec::new();
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(kib) = status_field(&status, "VmRSS") {
                out.push(
                    Family::new(
                        "process_resident_memory_bytes",
                        "Resident memory size in bytes",
                        Kind::Gauge,
                    )
                    .with(Vec::new(), kib * 1024.0),
                );
            }
            if let Some(n) = status_field(&status, "Threads") {
                out.push(
                    Family::new("process_threads", "Operating-system threads", Kind::Gauge)
                        .with(Vec::new(), n),
                );
            }
        }
        if let Some(cpu) = cpu_seconds() {
            out.push(
                Family::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds",
                    Kind::Counter,
                )
                .with(Vec::new(), cpu),
            );
            let mut previous = self.previous.lock().unwrap_or_else(PoisonError::into_inner);
            let (at, before) = *previous;
            let wall = at.elapsed().as_secs_f64();
            if wall >= 0.5 {
                *previous = (Instant::now(), cpu);
            }
            let percent = if wall > 0.0 {
                ((cpu - before).max(0.0) / wall * 1000.0).round() / 10.0
            } else {
                0.0
            };
            out.push(
                Family::new(
                    "agentry_cpu_usage_percent",
                    "CPU used since the previous reading, in percent of one core",
                    Kind::Gauge,
                )
                .with(Vec::new(), percent),
            );
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            out.push(
                Family::new("process_open_fds", "Open file descriptors", Kind::Gauge)
                    .with(Vec::new(), dir.count() as f64),
            );
        }
        out.push(
            Family::new(
                "agentry_tokio_tasks",
                "Tasks alive on the server's tokio runtimes (actix-web's per-connection tasks run on local sets and are not counted)",
                Kind::Gauge,
            )
            .with(Vec::new(), self.runtimes.alive_tasks() as f64),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let source = ProcessMetrics::new(Runtimes::default());
        let families = source.collect();
        let names: Vec<&str> = families.iter().map(|f| f.name).collect();
        assert!(names.contains(&"agentry_tokio_tasks"));
        if cfg!(target_os = "linux") {
            for name in [
                "process_resident_memory_bytes",
                "process_cpu_seconds_total",
                "process_threads",
            ] {
                assert!(names.contains(&name), "{name} in {names:?}");
            }
        }
        assert_eq!(status_field("VmRSS:\t  1234 kB\n", "VmRSS"), Some(1234.0));
    }
}
