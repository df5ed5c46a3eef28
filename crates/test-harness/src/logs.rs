//! Capturing what the server logs, to check that no secret ever reaches the logs.
//!
//! [`capture_logs`] installs a global `tracing` subscriber for the whole test process (the
//! servers of [`TestApp`](crate::TestApp)s run in-process, so their logs land there too) that
//! writes every event — `trace` for Agentry's crates, `debug` for the others — as JSON lines
//! into a buffer. It works once per process; nextest runs each test in its own process.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The captured log lines of this process.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    /// Everything captured so far.
    pub fn contents(&self) -> String {
        self.buffer
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// Writes into the shared buffer.
pub struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = BufferWriter;

    fn make_writer(&'a self) -> Self::Writer {
        BufferWriter(self.buffer.clone())
    }
}

static CAPTURE: OnceLock<Option<LogCapture>> = OnceLock::new();

/// Starts capturing every log event of this process (idempotent). Returns `None` when
/// another global subscriber was installed first.
pub fn capture_logs() -> Option<LogCapture> {
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let installed = tracing_subscriber::fmt()
                .json()
                .with_env_filter(EnvFilter::new("debug,agentry=trace"))
                .with_writer(capture.clone())
                .try_init();
            installed.is_ok().then_some(capture)
        })
        .clone()
}
