//! `agentry apply | get | delete | scale | eval run` against a running server, as an operator
//! or a CI pipeline runs them: the real binary on both ends, manifests from a file, a folder
//! and standard input, a test set gating on its pass rate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agentry");
const PASSWORD: &str = "cluster-cli-password-1";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agentry(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &std::path::Path, port: u16) -> Server {
    let mut child = Server(
        agentry(dir)
            .env("AGENTRY_ADDR", format!("127.0.0.1:{port}"))
            .env("AGENTRY_ADMIN_PASSWORD", PASSWORD)
            .env("AGENTRY_LOG", "warn")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the server exited early: {status}");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return child;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server did not become ready");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const SUPPORT: &str = "apiVersion: goagents.dev/v1
kind: AgentCluster
metadata:
  name: support
spec:
  resource_policy: {max_concurrent_agents: 5, idle_timeout: 300s, scale_to_zero: true}
  agents:
    - name: assistant
      model: mock/echo
      system_prompt: You are a helpful assistant.
";

#[test]
fn apply_get_scale_delete_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(dir.path(), port);
    // A key made on the host, used as a remote operator would.
    let out = agentry(dir.path())
        .args(["key", "create", "--name", "ops", "--scopes", "write"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_owned();
    let server = format!("http://127.0.0.1:{port}");
    let remote = |args: &[&str]| {
        let mut c = agentry(dir.path());
        c.args(args)
            .env("AGENTRY_SERVER", &server)
            .env("AGENTRY_API_KEY", &key);
        c
    };

    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("support.yaml"), SUPPORT).unwrap();
    std::fs::write(
        manifests.join("two.yml"),
        "apiVersion: agentry.dev/v1\nkind: AgentCluster\nmetadata: {name: sales}\nspec:\n  agents: [{name: closer, model: mock/echo, instances: 2}]\n---\napiVersion: agentry.dev/v1\nkind: AgentCluster\nmetadata: {name: billing}\nspec:\n  agents: [{name: biller, model: mock/echo}]\n",
    )
    .unwrap();
    std::fs::write(manifests.join("notes.txt"), "not a manifest").unwrap();

    let first = remote(&[
        "apply",
        "-f",
        manifests.join("support.yaml").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        "cluster/support created (assistant created v1)"
    );
    // Idempotent: the same manifest again changes nothing.
    let again = remote(&[
        "apply",
        "-f",
        manifests.join("support.yaml").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "cluster/support unchanged"
    );
    // A folder: every .yaml/.yml file, several documents each, in name order.
    let folder = remote(&["apply", "-f", manifests.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(folder.status.success(), "{}", text(&folder));
    let lines: Vec<String> = String::from_utf8_lossy(&folder.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            "cluster/support unchanged",
            "cluster/sales created (closer created v1)",
            "cluster/billing created (biller created v1)"
        ]
    );
    // Standard input, with a change.
    let mut child = remote(&["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SUPPORT.replace("a helpful", "a patient").as_bytes())
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success(), "{}", text(&piped));
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout).trim(),
        "cluster/support configured (assistant updated v2)"
    );

    let listed = remote(&["get", "clusters"]).output().unwrap();
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in ["billing", "sales", "support"] {
        assert!(listed.contains(name), "{listed}");
    }
    let agents = remote(&["get", "agents", "--cluster", "sales"])
        .output()
        .unwrap();
    let agents = String::from_utf8_lossy(&agents.stdout);
    assert!(
        agents.contains("closer") && !agents.contains("biller"),
        "{agents}"
    );

    let scaled = remote(&[
        "scale",
        "cluster",
        "sales",
        "--agent",
        "closer",
        "--instances",
        "4",
    ])
    .output()
    .unwrap();
    assert!(scaled.status.success(), "{}", text(&scaled));
    assert!(
        String::from_utf8_lossy(&scaled.stdout).contains("scaled from 2 to 4 instances"),
        "{}",
        text(&scaled)
    );
    let one = remote(&["get", "clusters", "sales", "-o", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(json["agents"][0]["instances"], 4);

    let deleted = remote(&["delete", "cluster", "billing"]).output().unwrap();
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout).trim(),
        "cluster/billing deleted; agents archived: biller"
    );

    // Errors: the server's code and field, a non-zero exit.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: goagents.dev/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {agents: []}\n",
    )
    .unwrap();
    let bad = remote(&["apply", "-f", "bad.yaml"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("400 VALIDATION_ERROR") && text(&bad).contains("(field kind)"),
        "{}",
        text(&bad)
    );
    let missing = remote(&[
        "scale",
        "cluster",
        "nope",
        "--agent",
        "a",
        "--instances",
        "2",
    ])
    .output()
    .unwrap();
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("CLUSTER_NOT_FOUND"),
        "{}",
        text(&missing)
    );
    let anonymous = agentry(dir.path())
        .args(["get", "clusters", "--server", &server])
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    assert!(
        text(&anonymous).contains("401 UNAUTHORIZED"),
        "{}",
        text(&anonymous)
    );
}

/// A JSON request over plain HTTP/1.1 with a bearer key; returns the status and the body.
fn request(port: u16, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn eval_run_gates_on_the_pass_rate() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(dir.path(), port);
    let out = agentry(dir.path())
        .args(["key", "create", "--name", "ci", "--scopes", "write"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_owned();
    let (status, body) = request(
        port,
        "POST",
        "/api/v1/agents",
        &key,
        r#"{"name": "Echo", "key": "echo", "model": "mock/echo"}"#,
    );
    assert_eq!(status, 201, "{body}");
    // The mock echoes: the first case passes, the second cannot.
    let (status, body) = request(
        port,
        "POST",
        "/api/v1/testsets",
        &key,
        r#"{"name": "release gate", "cases": [
            {"name": "echo", "input": "hello", "assertions": [{"type": "contains", "value": "hello"}]},
            {"name": "never", "input": "hello", "assertions": [{"type": "equals", "value": "goodbye"}]}]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let server = format!("http://127.0.0.1:{port}");
    let eval = |extra: &[&str]| {
        let mut c = agentry(dir.path());
        c.args(["eval", "run", "release gate", "--agent", "echo"])
            .args(extra)
            .env("AGENTRY_SERVER", &server)
            .env("AGENTRY_API_KEY", &key);
        c.output().unwrap()
    };

    let half = eval(&["--min-pass-rate", "0.5"]);
    assert_eq!(half.status.code(), Some(0), "{}", text(&half));
    let table = String::from_utf8_lossy(&half.stdout);
    assert!(table.contains("CONFIGURATION"), "{table}");
    assert!(table.contains("50.0%"), "{table}");
    assert!(table.contains("1/2"), "{table}");
    assert!(
        table.contains("echo / never: equals: expected \"goodbye\""),
        "{table}"
    );
    assert!(table.contains("PASSED"), "{table}");

    let strict = eval(&["--min-pass-rate", "0.9"]);
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict));
    assert!(String::from_utf8_lossy(&strict.stdout).contains("FAILED: below 90.0%: echo (50.0%)"));

    let json = eval(&["--min-pass-rate", "0.5", "--output", "json"]);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let run: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(run["status"], "completed");
    assert_eq!(run["summary"][0]["passed"], 1);

    // What cannot run is exit 2, with the server's reason.
    let missing = {
        let mut c = agentry(dir.path());
        c.args(["eval", "run", "no such set", "--agent", "echo"])
            .env("AGENTRY_SERVER", &server)
            .env("AGENTRY_API_KEY", &key);
        c.output().unwrap()
    };
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("404"), "{}", text(&missing));
    let nothing = eval(&["--agent", "nobody"]);
    assert_eq!(nothing.status.code(), Some(2), "{}", text(&nothing));
    assert!(
        text(&nothing).contains("configurations[1].agent"),
        "{}",
        text(&nothing)
    );
}
