//! The example program runs end to end: a streamed turn, a second turn in the same
//! conversation, the history; and a second run of it finds its agent and database again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(folder: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agentry-example-embedded"))
        .arg(folder)
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_embedded_example_runs_turns_without_a_web_server() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path());
    assert!(first.contains("agent: embedded-helper"), "{first}");
    assert!(
        first.contains("Hello from a program with no web server"),
        "the mock echoes the streamed message: {first}"
    );
    assert!(first.contains("finish_reason stop"), "{first}");
    assert!(
        first.contains("second answer:") && first.contains("And a second message"),
        "{first}"
    );
    assert!(
        first.contains(": 4 messages"),
        "two questions and two answers are stored: {first}"
    );
    assert!(dir.path().join("agentry.db").exists());

    let again = run(dir.path());
    let id = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("agent: "))
            .map(str::to_owned)
            .unwrap()
    };
    assert_eq!(
        id(&first),
        id(&again),
        "the second run finds the same agent"
    );
}
