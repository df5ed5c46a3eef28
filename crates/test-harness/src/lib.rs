//! Start a real Agentry in-process, on a free port, with its own temporary database, and
//! talk to it over HTTP. For Agentry's own tests and for users' integration tests.
//!
//! ```no_run
//! # async fn demo() {
//! let app = agentry_test_harness::TestApp::spawn().await;
//! let res = app.get("/health").await;
//! assert_eq!(res.status(), 200);
//! # }
//! ```
//!
//! The app authenticates transparently: its admin (`admin` / [`TEST_ADMIN_PASSWORD`]) logs in
//! at start, and every request made through [`TestApp::get`], [`TestApp::post`]…,
//! [`TestApp::request`] and [`TestApp::client`] carries `Authorization: Bearer <token>`. Use
//! [`TestApp::request_as`] to call as someone else or anonymously. Rate limits are set very
//! high unless a test configures them.
//!
//! The database is a fresh SQLite file by default. With `AGENTRY_TEST_DATABASE=postgres`
//! every app gets its own PostgreSQL schema on `AGENTRY_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test?sslmode=disable`), dropped when the app is dropped.

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
pub use agentry::config::Config;
use agentry::config::ProviderConfig;
use agentry::{Application, BuildOptions, StartError};
pub use agentry_fake_upstream as fake_upstream;
pub use agentry_provider::{MockReply, MockScript};
use agentry_storage::test_support::{PgSchemaGuard, fresh_postgres_url, fresh_sqlite_url};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Response};
use secrecy::SecretString;
use serde_json::{Value, json};

mod logs;
pub use logs::{LogCapture, capture_logs};

/// The bootstrap admin's password in every test app (unless a test configures another).
pub const TEST_ADMIN_PASSWORD: &str = "test-admin-password-0123";
/// The password [`TestApp::create_user`] gives new users.
pub const TEST_USER_PASSWORD: &str = "test-user-password-0123";

/// Which database backend a test app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh schema in PostgreSQL.
    Postgres,
}

impl TestBackend {
    /// The backend chosen by `AGENTRY_TEST_DATABASE` (`sqlite`, the default, or `postgres`).
    pub fn from_env() -> Self {
        match std::env::var("AGENTRY_TEST_DATABASE").as_deref() {
            Ok("postgres" | "postgresql" | "pg") => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

/// Why a test app could not start.
#[derive(Debug)]
pub enum HarnessError {
    /// The temporary database could not be made.
    Database(String),
    /// The server did not start.
    Start(StartError),
    /// The admin could not log in.
    Login(String),
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Database(e) => write!(f, "test database: {e}"),
            Self::Start(e) => write!(f, "server start: {e}"),
            Self::Login(e) => write!(f, "admin login: {e}"),
        }
    }
}

impl std::error::Error for HarnessError {}

/// Keeps a test database alive as long as the app (and its restarts) need it.
struct DbGuard {
    _dir: tempfile::TempDir,
    _schema: Option<PgSchemaGuard>,
}

/// Builds a [`TestApp`].
pub struct TestAppBuilder {
    config: Config,
    backend: TestBackend,
    map_url: Option<UrlMap>,
}

/// Rewrites a database URL (see [`TestAppBuilder::map_database_url`]).
type UrlMap = Box<dyn FnOnce(&str) -> String + Send>;

impl TestAppBuilder {
    /// Adds a provider, as the config file would (`kind`: `openai`, `anthropic` or `mock`).
    #[must_use]
    pub fn provider(
        mut self,
        id: &str,
        kind: &str,
        base_url: Option<&str>,
        models: &[&str],
    ) -> Self {
        self.config.providers.push(ProviderConfig {
            id: id.to_owned(),
            kind: kind.to_owned(),
            base_url: base_url.map(str::to_owned),
            api_key: None,
            api_key_env: None,
            models: models.iter().map(|m| (*m).to_owned()).collect(),
        });
        self
    }

    /// Adds `mock`-kind providers named like the ones the seed documents use
    /// (`openai-prod` with `gpt-4`, `gpt-4o`, `gpt-3.5-turbo`; `anthropic` with
    /// `claude-sonnet-4`, `claude-3.5-sonnet`), so their examples resolve offline.
    #[must_use]
    pub fn with_seed_providers(self) -> Self {
        self.provider(
            "openai-prod",
            "mock",
            None,
            &["gpt-4", "gpt-4o", "gpt-3.5-turbo"],
        )
        .provider(
            "anthropic",
            "mock",
            None,
            &["claude-sonnet-4", "claude-3.5-sonnet"],
        )
    }

    /// Changes any other setting.
    #[must_use]
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Chooses the backend (default: [`TestBackend::from_env`]).
    #[must_use]
    pub fn backend(mut self, backend: TestBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Rewrites the URL of the fresh test database before the server uses it (for example
    /// to reach PostgreSQL through a relay the test controls).
    #[must_use]
    pub fn map_database_url(mut self, f: impl FnOnce(&str) -> String + Send + 'static) -> Self {
        self.map_url = Some(Box::new(f));
        self
    }

    /// Makes the database and starts the server.
    ///
    /// # Errors
    /// [`HarnessError`] when either fails.
    pub async fn try_spawn(mut self) -> Result<TestApp, HarnessError> {
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Database(e.to_string()))?;
        let schema = match self.backend {
            TestBackend::Sqlite => {
                self.config.database_url = fresh_sqlite_url(dir.path());
                None
            }
            TestBackend::Postgres => {
                let Some((url, guard)) = fresh_postgres_url().map_err(HarnessError::Database)?
                else {
                    return Err(HarnessError::Database(
                        "PostgreSQL is not reachable (AGENTRY_TEST_POSTGRES_URL)".to_owned(),
                    ));
                };
                self.config.database_url = url;
                Some(guard)
            }
        };
        if let Some(map) = self.map_url.take() {
            self.config.database_url = map(&self.config.database_url);
        }
        // Uploaded files go to the test's own folder, whatever the backend.
        if self.config.data_dir.is_none() {
            self.config.data_dir = Some(dir.path().to_path_buf());
        }
        let guard = DbGuard {
            _dir: dir,
            _schema: schema,
        };
        TestApp::start(self.config, self.backend, guard, MockScript::default()).await
    }

    /// [`TestAppBuilder::try_spawn`], failing the test on error.
    ///
    /// # Panics
    /// When the app cannot start: the test cannot go on.
    #[allow(clippy::panic)]
    pub async fn spawn(self) -> TestApp {
        match self.try_spawn().await {
            Ok(app) => app,
            Err(e) => panic!("cannot start the test app: {e}"),
        }
    }
}

/// A running Agentry with its own database.
pub struct TestApp {
    addr: SocketAddr,
    base_url: String,
    client: reqwest::Client,
    anonymous: reqwest::Client,
    admin_token: Option<String>,
    server: ServerThread,
    config: Config,
    backend: TestBackend,
    db: Option<DbGuard>,
    mock_script: MockScript,
}

impl TestApp {
    /// A builder with the defaults: only the built-in `mock` provider, the backend from the
    /// environment, one worker, a random port.
    pub fn builder() -> TestAppBuilder {
        let mut config = match Config::defaults() {
            Ok(c) => c,
            Err(_) => unreachable_defaults(),
        };
        config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.workers = Some(1);
        config.shutdown_timeout_secs = 1;
        config.admin_password = Some(SecretString::from(TEST_ADMIN_PASSWORD));
        // Tests send many requests quickly; rate-limit tests set low limits themselves.
        config.rate_limit_per_minute = 1_000_000;
        config.rate_limit_burst = 1_000_000;
        config.rate_limit_concurrency = 100_000;
        TestAppBuilder {
            config,
            backend: TestBackend::from_env(),
            map_url: None,
        }
    }

    /// An app with the defaults.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    async fn start(
        config: Config,
        backend: TestBackend,
        db: impl Into<Option<DbGuard>>,
        mock_script: MockScript,
    ) -> Result<Self, HarnessError> {
        let options = BuildOptions {
            disable_signals: true,
            mock_script: Some(mock_script.clone()),
        };
        let (server, addr) = ServerThread::start(config.clone(), options).await?;
        let base_url = format!("http://{addr}");
        let anonymous = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HarnessError::Database(e.to_string()))?;
        let admin_token = admin_login(&anonymous, &base_url, &config).await?;
        let mut headers = HeaderMap::new();
        if let Some(token) = &admin_token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| HarnessError::Login(e.to_string()))?;
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .map_err(|e| HarnessError::Database(e.to_string()))?;
        Ok(Self {
            addr,
            base_url,
            client,
            anonymous,
            admin_token,
            server,
            config,
            backend,
            db: db.into(),
            mock_script,
        })
    }

    /// The script of every `mock`-kind provider of this app: replies pushed here are served
    /// first, in order, before the model-name behaviour (`echo`, `error-500`, `slow-100`…).
    pub fn mock_script(&self) -> &MockScript {
        &self.mock_script
    }

    /// Stops this server and starts a new one on the same database (same config, new port):
    /// what survives is what was stored.
    ///
    /// # Errors
    /// [`HarnessError`] when the new server does not start.
    pub async fn restart(self) -> Result<Self, HarnessError> {
        self.restart_with(|_| {}).await
    }

    /// [`TestApp::restart`] with changes to its configuration (say, another embedding
    /// model), as an operator restarting with a changed config file.
    ///
    /// # Errors
    /// [`HarnessError`] when the new server does not start.
    pub async fn restart_with(mut self, f: impl FnOnce(&mut Config)) -> Result<Self, HarnessError> {
        f(&mut self.config);
        self.server.stop();
        let db = self
            .db
            .take()
            .ok_or_else(|| HarnessError::Database("database already released".to_owned()))?;
        Self::start(
            self.config.clone(),
            self.backend,
            db,
            self.mock_script.clone(),
        )
        .await
    }

    /// A second server on the same database while this one keeps running (same config, new
    /// port), like two replicas behind a load balancer. The database belongs to `self`:
    /// keep `self` alive as long as the replica.
    ///
    /// # Errors
    /// [`HarnessError`] when the replica does not start.
    pub async fn replica(&self) -> Result<Self, HarnessError> {
        Self::start(
            self.config.clone(),
            self.backend,
            None,
            self.mock_script.clone(),
        )
        .await
    }

    /// [`TestApp::replica`] with changes to its configuration (say, a replica that runs no
    /// tasks).
    ///
    /// # Errors
    /// [`HarnessError`] when the replica does not start.
    pub async fn replica_with(&self, f: impl FnOnce(&mut Config)) -> Result<Self, HarnessError> {
        let mut config = self.config.clone();
        f(&mut config);
        Self::start(config, self.backend, None, self.mock_script.clone()).await
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The backend in use.
    pub fn backend(&self) -> TestBackend {
        self.backend
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// An HTTP client that sends the admin's `Authorization` header (no redirects followed).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// An HTTP client without credentials (no redirects followed).
    pub fn anonymous_client(&self) -> &reqwest::Client {
        &self.anonymous
    }

    /// The bootstrap admin's access token.
    ///
    /// # Panics
    /// When the admin did not log in (a test configured no known admin password, or disabled
    /// authentication).
    #[allow(clippy::panic)]
    pub fn admin_token(&self) -> String {
        match &self.admin_token {
            Some(t) => t.clone(),
            None => panic!("the test admin is not logged in"),
        }
    }

    /// Sends a request with `Authorization: Bearer <token>`, or without credentials when
    /// `token` is `None`.
    ///
    /// # Panics
    /// When the server cannot be reached at all.
    #[allow(clippy::panic)]
    pub async fn request_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.anonymous.request(method.clone(), self.url(path));
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        match req.send().await {
            Ok(r) => r,
            Err(e) => panic!("{method} {path} failed: {e}"),
        }
    }

    /// Logs in and returns the whole answer (`access_token`, `refresh_token`, `user`…).
    ///
    /// # Panics
    /// When the login fails.
    #[allow(clippy::panic)]
    pub async fn login_tokens(&self, username: &str, password: &str) -> Value {
        let body = json!({"username": username, "password": password});
        let (status, value) = json(
            self.request_as(None, Method::POST, "/api/v1/auth/login", Some(&body))
                .await,
        )
        .await;
        if status != 200 {
            panic!("login of {username} failed: {status} {value}");
        }
        value
    }

    /// Logs in and returns the access token.
    ///
    /// # Panics
    /// When the login fails.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let tokens = self.login_tokens(username, password).await;
        tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Creates a user with `role` (as the admin) and returns its id and password
    /// ([`TEST_USER_PASSWORD`]).
    ///
    /// # Panics
    /// When the user cannot be created.
    #[allow(clippy::panic)]
    pub async fn create_user(&self, username: &str, role: &str) -> (String, String) {
        let body = json!({"username": username, "password": TEST_USER_PASSWORD, "role": role});
        let (status, value) = json(self.post("/api/v1/users", &body).await).await;
        if status != 201 {
            panic!("creating user {username} failed: {status} {value}");
        }
        (
            value["id"].as_str().unwrap_or_default().to_owned(),
            TEST_USER_PASSWORD.to_owned(),
        )
    }

    /// Creates an API key (as the admin) with `scopes`, limited to `agents` when given, and
    /// returns its secret (`agk_…`).
    ///
    /// # Panics
    /// When the key cannot be created.
    #[allow(clippy::panic)]
    pub async fn create_api_key(&self, scopes: &[&str], agents: Option<&[&str]>) -> String {
        let mut body = json!({"name": format!("test key {}", scopes.join("+")), "scopes": scopes});
        if let Some(a) = agents {
            body["agents"] = json!(a);
        }
        let (status, value) = json(self.post("/api/v1/api-keys", &body).await).await;
        if status != 201 {
            panic!("creating an API key failed: {status} {value}");
        }
        value["key"].as_str().unwrap_or_default().to_owned()
    }

    /// Sends a request with an optional JSON body.
    ///
    /// # Panics
    /// When the server cannot be reached at all.
    #[allow(clippy::panic)]
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut req = self.client.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        match req.send().await {
            Ok(r) => r,
            Err(e) => panic!("{method} {path} failed: {e}"),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, None).await
    }
}

/// Logs the bootstrap admin in, when its password is known and authentication is on.
async fn admin_login(
    client: &reqwest::Client,
    base_url: &str,
    config: &Config,
) -> Result<Option<String>, HarnessError> {
    let Some(password) = &config.admin_password else {
        return Ok(None);
    };
    if config.auth_disabled {
        return Ok(None);
    }
    let body = json!({
        "username": config.admin_username,
        "password": secrecy::ExposeSecret::expose_secret(password),
    });
    let res = client
        .post(format!("{base_url}/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .map_err(|e| HarnessError::Login(e.to_string()))?;
    let status = res.status();
    let value: Value = res
        .json()
        .await
        .map_err(|e| HarnessError::Login(e.to_string()))?;
    match value["access_token"].as_str() {
        Some(t) if status.is_success() => Ok(Some(t.to_owned())),
        _ => Err(HarnessError::Login(format!("{status}: {value}"))),
    }
}

#[allow(clippy::panic)]
fn unreachable_defaults() -> Config {
    panic!("the built-in default configuration is invalid")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// The server on a thread of its own with its own runtime, like a separate process. Stopping
/// it joins the thread, so its workers and database pool are gone before the test's database
/// is dropped and before the test process exits.
struct ServerThread {
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    async fn start(
        config: Config,
        options: BuildOptions,
    ) -> Result<(Self, SocketAddr), HarnessError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("agentry-test-server".to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(HarnessError::Database(format!("runtime: {e}"))));
                        return;
                    }
                };
                rt.block_on(async move {
                    match Application::build_with(config, options).await {
                        Ok(app) => {
                            let _ = tx.send(Ok((app.addr(), app.handle())));
                            let _ = app.run_until_stopped().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(HarnessError::Start(e)));
                        }
                    }
                });
            })
            .map_err(|e| HarnessError::Database(format!("server thread: {e}")))?;
        let started = rx.await.map_err(|_| {
            HarnessError::Database("the server thread ended before starting".to_owned())
        })?;
        let (addr, handle) = match started {
            Ok(ok) => ok,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok((
            Self {
                handle,
                thread: Some(thread),
            },
            addr,
        ))
    }

    /// Stops the server at once and waits for its thread (idempotent).
    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The command is sent when `stop` is called; the returned future only waits.
            drop(self.handle.stop(false));
            let _ = thread.join();
        }
    }
}

/// Reads a response as JSON, with its status.
///
/// # Panics
/// When the body is not JSON: the API promises JSON everywhere this is used.
#[allow(clippy::panic)]
pub async fn json(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    match serde_json::from_str(&text) {
        Ok(v) => (status, v),
        Err(e) => panic!("status {status}: body is not JSON ({e}): {text}"),
    }
}
