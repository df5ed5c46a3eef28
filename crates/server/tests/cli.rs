//! The `agentry` binary as an operator runs it: CLI, start-up errors, logs, signals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agentry");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command with a clean environment apart from what the test sets.
fn agentry(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn wait_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited early: {status}");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server did not become ready");
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = agentry(dir.path()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("agentry {}", env!("CARGO_PKG_VERSION"))
    );
    let out = agentry(dir.path()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve") && help.contains("migrate"), "{help}");
}

#[test]
fn migrate_creates_the_default_sqlite_database_then_is_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let first = agentry(dir.path()).arg("migrate").output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("applied 2026-11-23-000001_init"), "{text}");
    assert!(
        dir.path().join("data/agentry.db").is_file(),
        "the default database is ./data/agentry.db"
    );
    let again = agentry(dir.path()).arg("migrate").output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
}

#[test]
fn bad_configuration_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = agentry(dir.path())
        .arg("migrate")
        .env("DATABASE_URL", "mysql://root@localhost/x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mysql") && err.contains("sqlite") && err.contains("postgres"),
        "names the scheme and the accepted ones: {err}"
    );

    std::fs::write(dir.path().join("bad.toml"), "adress = \"127.0.0.1:1\"\n").unwrap();
    let out = agentry(dir.path())
        .args(["--config", "bad.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("adress"));

    let out = agentry(dir.path())
        .arg("serve")
        .env("AGENTRY_WORKERZ", "2")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown AGENTRY_* variables are rejected too"
    );
}

#[test]
fn json_logs_and_graceful_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = agentry(dir.path())
        .arg("serve")
        .env("AGENTRY_ADDR", format!("127.0.0.1:{port}"))
        .env("AGENTRY_LOG_FORMAT", "json")
        .env("AGENTRY_ADMIN_PASSWORD", "a-configured-password")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port, &mut child);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a SIGTERM stop is a clean exit: {exit}");
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("Agentry listening")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("request_id")),
        "request logs carry the request id: {lines:?}"
    );
}
