//! The real `agentry` binary: first-start credentials, the `user` and `key` commands, and the
//! refusal to run without authentication on a public address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_agentry");

fn command(db: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("AGENTRY_ADDR", "127.0.0.1:0")
        .env("AGENTRY_LOG", "debug")
        .env("AGENTRY_LOG_FORMAT", "json");
    cmd
}

/// A running server, its address, and everything it wrote to stderr so far.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
    addr: String,
}

impl Server {
    fn start(db: &Path) -> Self {
        Self::start_with(command(db))
    }

    fn start_with(mut cmd: Command) -> Self {
        let mut child = cmd
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut server = Self {
            child,
            lines: rx,
            stderr: Vec::new(),
            addr: String::new(),
        };
        loop {
            let line = server
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no start-up line: {:?}", server.stderr));
            let addr = serde_json::from_str::<Value>(&line)
                .ok()
                .filter(|v| v["message"] == "Agentry listening")
                .and_then(|v| v["addr"].as_str().map(str::to_owned));
            server.stderr.push(line);
            if let Some(a) = addr {
                server.addr = a;
                return server;
            }
        }
    }

    fn output(&mut self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        while let Ok(line) = self.lines.try_recv() {
            self.stderr.push(line);
        }
        self.stderr.join("\n")
    }

    async fn login(&self, username: &str, password: &str) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("http://{}/api/v1/auth/login", self.addr))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(db: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = command(db);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn value_after(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in {text}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn first_start_prints_a_generated_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("first.db");
    let mut server = Server::start(&db);
    let out = server.output();
    let password = value_after(&out, "password:");
    assert!(password.len() >= 20, "{password}");
    assert_eq!(
        out.matches(&password).count(),
        1,
        "printed once, never logged: {out}"
    );
    assert!(out.contains("username: admin"), "{out}");
    let (status, body) = server.login("admin", &password).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = server.login("admin", "wrong-password").await;
    assert_eq!(status, 401);
    let out = server.output();
    for secret in [
        password.as_str(),
        token.as_str(),
        refresh.as_str(),
        "wrong-password",
    ] {
        assert_eq!(
            out.matches(secret).count(),
            usize::from(secret == password),
            "{out}"
        );
    }
    drop(server);

    // The next start on the same database creates nobody and prints nothing.
    let mut again = Server::start(&db);
    let out = again.output();
    assert!(!out.contains("password:"), "{out}");
    assert_eq!(again.login("admin", &password).await.0, 200);
}

#[tokio::test]
async fn configured_admin_password_is_used_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&dir.path().join("configured.db"));
    cmd.env("AGENTRY_ADMIN_USERNAME", "root")
        .env("AGENTRY_ADMIN_PASSWORD", "configured-password-1");
    let mut server = Server::start_with(cmd);
    let out = server.output();
    assert!(
        !out.contains("configured-password-1") && !out.contains("password:"),
        "{out}"
    );
    assert_eq!(server.login("root", "configured-password-1").await.0, 200);
    assert_eq!(server.login("admin", "configured-password-1").await.0, 401);
}

#[tokio::test]
async fn user_and_key_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let added = stdout(&run(
        &db,
        &[
            "user",
            "add",
            "bob",
            "--role",
            "editor",
            "--email",
            "bob@example.com",
        ],
        None,
    ));
    let bob_password = value_after(&added, "password:");
    assert!(added.contains("created user bob"), "{added}");
    let piped = stdout(&run(
        &db,
        &["user", "add", "carol", "--password-stdin"],
        Some("carol-password-1\n"),
    ));
    assert!(!piped.contains("password:"), "{piped}");
    let listed = stdout(&run(&db, &["user", "list"], None));
    assert!(
        listed.contains("bob") && listed.contains("editor") && listed.contains("carol"),
        "{listed}"
    );
    assert!(!listed.contains("argon2"), "{listed}");
    let changed = stdout(&run(&db, &["user", "passwd", "bob"], None));
    let new_password = value_after(&changed, "password:");
    assert_ne!(new_password, bob_password);

    let created = stdout(&run(
        &db,
        &[
            "key",
            "create",
            "--name",
            "ci",
            "--scopes",
            "read,invoke",
            "--agents",
            "support-bot",
        ],
        None,
    ));
    let key = value_after(&created, "key:");
    assert!(key.starts_with("agk_"), "{created}");
    let id = created
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_owned();
    let keys = stdout(&run(&db, &["key", "list"], None));
    assert!(keys.contains(&key[..12]) && !keys.contains(&key), "{keys}");
    assert!(keys.contains("active"), "{keys}");

    // The server accepts what the commands made.
    let server = Server::start(&db);
    assert_eq!(server.login("carol", "carol-password-1").await.0, 200);
    assert_eq!(server.login("bob", &new_password).await.0, 200);
    assert_eq!(server.login("bob", &bob_password).await.0, 401);
    let agents = |k: String| {
        let addr = server.addr.clone();
        async move {
            reqwest::Client::new()
                .get(format!("http://{addr}/api/v1/agents"))
                .bearer_auth(k)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(agents(key.clone()).await, 200);
    let revoked = stdout(&run(&db, &["key", "revoke", &id], None));
    assert!(revoked.contains("revoked"), "{revoked}");
    // The running server's caches follow the change counter the CLI moved: the revocation
    // holds within its sync interval (250 ms by default).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while agents(key.clone()).await != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server still accepts a key revoked by the CLI"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let again = run(&db, &["key", "revoke", &id], None);
    assert!(!again.status.success());

    let bad = run(&db, &["user", "add", "dave", "--role", "root"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("role"));
}

#[test]
fn auth_disabled_on_a_public_address_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(&dir.path().join("open.db"))
        .env("AGENTRY_AUTH_DISABLED", "true")
        .env("AGENTRY_ADDR", "0.0.0.0:0")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth_disabled") && err.contains("loopback"),
        "{err}"
    );
}
