//! Configuration: defaults, then the TOML file named by `AGENTRY_CONFIG` (or `--config`), then
//! `AGENTRY_*` environment variables and `DATABASE_URL`. Unknown keys are errors. Secrets are
//! `SecretString`s: never printed, never serialised.

use std::net::SocketAddr;
use std::path::Path;

use agentry_provider::HttpVersion;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Where the default SQLite database lives.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/agentry.db";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A provider defined in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Id, the first half of `provider/model`.
    pub id: String,
    /// `openai`, `anthropic` or `mock`.
    pub kind: String,
    /// Base URL; the kind's public API when absent.
    pub base_url: Option<String>,
    /// The credential, inline. Prefer `api_key_env`.
    pub api_key: Option<SecretString>,
    /// The name of an environment variable holding the credential.
    pub api_key_env: Option<String>,
    /// Models served.
    #[serde(default)]
    pub models: Vec<String>,
}

/// An S3-compatible bucket for files (`[files_s3]` in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The endpoint (`http://127.0.0.1:9000`); AWS's, from the region, when absent.
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// The region.
    #[serde(default = "default_region")]
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (write-only: never logged).
    pub secret_access_key: SecretString,
    /// Allow an `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// The server's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address (`AGENTRY_ADDR`).
    pub addr: SocketAddr,
    /// `sqlite://…` or `postgres://…` (`DATABASE_URL`).
    pub database_url: String,
    /// Largest database pool.
    pub database_max_connections: Option<u32>,
    /// `text` or `json` (`AGENTRY_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `agentry=debug` (`AGENTRY_LOG`).
    pub log: String,
    /// Largest JSON body in bytes (`AGENTRY_JSON_LIMIT_BYTES`).
    pub json_limit_bytes: usize,
    /// Seconds a request body may take to arrive whole (`AGENTRY_REQUEST_BODY_TIMEOUT_SECS`).
    pub request_body_timeout_secs: u64,
    /// The model of agents saved without one (`AGENTRY_DEFAULT_MODEL`).
    pub default_model: String,
    /// HTTP worker threads; one per core when absent (`AGENTRY_WORKERS`).
    pub workers: Option<usize>,
    /// Most client connections served at once, over all workers (`AGENTRY_MAX_CONNECTIONS`);
    /// when absent, the process's open-files limit less [`FD_RESERVE`] for the database,
    /// providers, tools and logs. Connections opened past it are answered 503 and closed; an
    /// eighth more (8 to 64) are accepted for that, past which the server stops accepting.
    pub max_connections: Option<usize>,
    /// Seconds to finish in-flight requests on SIGTERM (`AGENTRY_SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout_secs: u64,
    /// Seconds to connect to a provider (`AGENTRY_PROVIDER_CONNECT_TIMEOUT_SECS`).
    pub provider_connect_timeout_secs: u64,
    /// Seconds for a whole provider answer, or to the first streamed token
    /// (`AGENTRY_PROVIDER_TIMEOUT_SECS`).
    pub provider_timeout_secs: u64,
    /// Seconds for a whole provider call over every retry, up to its answer or first streamed
    /// token (`AGENTRY_PROVIDER_TOTAL_TIMEOUT_SECS`).
    pub provider_total_timeout_secs: u64,
    /// Seconds of silence tolerated between streamed tokens (`AGENTRY_PROVIDER_STREAM_IDLE_SECS`).
    pub provider_stream_idle_secs: u64,
    /// Retries on 429, 5xx and connection failures before the first streamed token
    /// (`AGENTRY_PROVIDER_MAX_RETRIES`).
    pub provider_max_retries: u32,
    /// Calls carried by one provider connection at a time over HTTP/2; a further call opens
    /// another connection (`AGENTRY_PROVIDER_STREAMS_PER_CONNECTION`; 0 counts as 1).
    pub provider_streams_per_connection: usize,
    /// HTTP versions of provider calls (`AGENTRY_PROVIDER_HTTP_VERSION`): `auto` (HTTP/2 when
    /// an `https://` upstream offers it, else HTTP/1.1), `http1`, or `http2` (also spoken from
    /// the start to `http://` upstreams, h2c).
    pub provider_http_version: HttpVersion,
    /// Earlier messages sent upstream with each chat turn, at most (`AGENTRY_HISTORY_MAX_MESSAGES`).
    pub history_max_messages: u32,
    /// Characters of earlier messages sent upstream, at most; the oldest are dropped first
    /// (`AGENTRY_HISTORY_MAX_CHARS`).
    pub history_max_chars: usize,
    /// Bytes (about) of the conversations this server just stored that it keeps in memory,
    /// so that a turn continuing from one of their answers (`previous_response_id`) reads
    /// nothing back; the oldest go first; 0 turns it off (`AGENTRY_CONVERSATION_CACHE_BYTES`).
    pub conversation_cache_bytes: usize,
    /// Rounds of an agent's own tool calls in one turn, at most; a model asking for more is
    /// stopped with a clear answer (`AGENTRY_MAX_TOOL_STEPS`).
    pub max_tool_steps: u32,
    /// Seconds for one HTTP tool call (`AGENTRY_TOOL_TIMEOUT_SECS`).
    pub tool_timeout_secs: u64,
    /// Largest HTTP tool response read, in bytes; longer ones are cut and marked
    /// (`AGENTRY_TOOL_MAX_RESPONSE_BYTES`).
    pub tool_max_response_bytes: usize,
    /// Hosts, addresses and CIDR ranges that HTTP tools may reach although they are loopback,
    /// private or link-local (the SSRF guard's exceptions; `AGENTRY_TOOL_ALLOWED_HOSTS`, e.g.
    /// `["127.0.0.1","api.internal"]`). Empty by default.
    pub tool_allowed_hosts: Vec<String>,
    /// Seconds an MCP server may take to start (spawn, handshake, tool list) before the
    /// start counts as failed (`AGENTRY_MCP_START_TIMEOUT_SECS`).
    pub mcp_start_timeout_secs: u64,
    /// Automatic restarts of a crashed MCP server before it is left `crashed`
    /// (`AGENTRY_MCP_MAX_RESTARTS`).
    pub mcp_max_restarts: u32,
    /// The first restart's delay in milliseconds; each next one doubles it
    /// (`AGENTRY_MCP_BACKOFF_BASE_MS`).
    pub mcp_backoff_base_ms: u64,
    /// The longest delay between restarts, in seconds (`AGENTRY_MCP_BACKOFF_MAX_SECS`).
    pub mcp_backoff_max_secs: u64,
    /// Seconds a stopping MCP server gets after its standard input closes, and again after
    /// SIGTERM, before the next step (`AGENTRY_MCP_STOP_GRACE_SECS`).
    pub mcp_stop_grace_secs: u64,
    /// Log lines kept per MCP server (`AGENTRY_MCP_LOG_LINES`).
    pub mcp_log_lines: usize,
    /// Task workers in this process; 0 runs none here (`AGENTRY_TASK_WORKERS`).
    pub task_workers: usize,
    /// Seconds a worker's claim on a task lasts unless renewed; a replica that dies loses
    /// its tasks to others after this (`AGENTRY_TASK_LEASE_SECS`).
    pub task_lease_secs: u64,
    /// Milliseconds between an idle worker's looks for work; new tasks wake workers at once
    /// (`AGENTRY_TASK_POLL_MS`).
    pub task_poll_ms: u64,
    /// Milliseconds before a failed attempt is retried, doubled each attempt
    /// (`AGENTRY_TASK_RETRY_BASE_MS`).
    pub task_retry_base_ms: u64,
    /// Evaluation runs this process executes at once; 0 runs none here
    /// (`AGENTRY_EVAL_RUNNERS`).
    pub eval_runners: usize,
    /// Seconds a runner's claim on an evaluation run lasts unless renewed; a replica that dies
    /// leaves its runs to others after this (`AGENTRY_EVAL_LEASE_SECS`).
    pub eval_lease_secs: u64,
    /// Minutes without a new message after which a conversation is analysed for insights
    /// (`AGENTRY_INSIGHTS_IDLE_MINUTES`).
    pub insights_idle_minutes: u64,
    /// The analysis model: an agent key or `provider/model` (`AGENTRY_INSIGHTS_MODEL`); none:
    /// the built-in deterministic analyser.
    pub insights_model: Option<String>,
    /// Most analyses by the model in 24 hours, then the built-in analyser
    /// (`AGENTRY_INSIGHTS_DAILY_CAP`).
    pub insights_daily_cap: u64,
    /// Seconds between looks for idle conversations (`AGENTRY_INSIGHTS_SWEEP_SECS`).
    pub insights_sweep_secs: u64,
    /// Milliseconds between an idle runner's looks for a run; new runs wake runners at once
    /// (`AGENTRY_EVAL_POLL_MS`).
    pub eval_poll_ms: u64,
    /// The first admin's username, created on first start (`AGENTRY_ADMIN_USERNAME`).
    pub admin_username: String,
    /// The first admin's password (`AGENTRY_ADMIN_PASSWORD`); a random one is printed once
    /// when absent.
    pub admin_password: Option<SecretString>,
    /// Development only: no authentication, every request is an admin. Refused unless `addr`
    /// is a loopback address (`AGENTRY_AUTH_DISABLED`).
    pub auth_disabled: bool,
    /// The access-token signing key, at least 32 bytes (`AGENTRY_JWT_SECRET`); when absent one
    /// is generated once and stored in the database, shared by every replica.
    pub jwt_secret: Option<SecretString>,
    /// Seconds an access token works (`AGENTRY_ACCESS_TOKEN_TTL_SECS`).
    pub access_token_ttl_secs: u64,
    /// Seconds a refresh token works (`AGENTRY_REFRESH_TOKEN_TTL_SECS`).
    pub refresh_token_ttl_secs: u64,
    /// Failed logins for one username before each attempt must wait
    /// (`AGENTRY_LOGIN_MAX_FAILURES`); an address gets four times as many.
    pub login_max_failures: u32,
    /// Requests per minute per client (`AGENTRY_RATE_LIMIT_PER_MINUTE`).
    pub rate_limit_per_minute: u32,
    /// Requests a client may send at once after a quiet period (`AGENTRY_RATE_LIMIT_BURST`).
    pub rate_limit_burst: u32,
    /// Requests in flight per client (`AGENTRY_RATE_LIMIT_CONCURRENCY`).
    pub rate_limit_concurrency: u32,
    /// Whether per-minute limits hold for the whole deployment (counts shared through the
    /// database every `rate_limit_sync_ms`); default: on with PostgreSQL, off with SQLite
    /// (one process) (`AGENTRY_RATE_LIMIT_SHARED`).
    pub rate_limit_shared: Option<bool>,
    /// Milliseconds between two shares of the rate-limit counts (`AGENTRY_RATE_LIMIT_SYNC_MS`).
    pub rate_limit_sync_ms: u64,
    /// Seconds an entry of the in-process caches (agents, versions, providers, users,
    /// sessions, API keys) may be used at most; 0 turns the caches off (`AGENTRY_CACHE_TTL_SECS`).
    pub cache_ttl_secs: u64,
    /// Milliseconds between two reads of the shared change counter: how long a change made
    /// on another replica may take to reach this one's caches (`AGENTRY_CACHE_SYNC_MS`).
    pub cache_sync_ms: u64,
    /// Seconds between two returns of glibc's freed heap memory to the operating system
    /// (`malloc_trim`, on Linux only; with jemalloc, decision 132, that heap holds what C
    /// libraries allocate); 0 turns it off (`AGENTRY_MEMORY_TRIM_SECS`).
    pub memory_trim_secs: u64,
    /// Milliseconds a turn of a cluster agent waits for one of its instances before it is
    /// refused with 503 (`AGENTRY_INSTANCE_QUEUE_TIMEOUT_MS`).
    pub instance_queue_timeout_ms: u64,
    /// Turns that may wait for one agent's instances at once; the next is refused at once
    /// (`AGENTRY_INSTANCE_QUEUE_MAX`).
    pub instance_queue_max: u32,
    /// Replaces `agentry` at the start of every Prometheus metric name (`goagents` gives
    /// `goagents_requests_total`) (`AGENTRY_METRICS_PREFIX`).
    pub metrics_prefix: String,
    /// `GET /metrics` on the main listener needs no credential (`AGENTRY_METRICS_PUBLIC`).
    pub metrics_public: bool,
    /// A second listen address serving only `GET /metrics`, without authentication, for
    /// scrapers on a private network (`AGENTRY_METRICS_ADDR`); none by default.
    pub metrics_addr: Option<SocketAddr>,
    /// The data folder: uploaded files (`files/`) and the knowledge index; the SQLite
    /// file's folder by default, else `./data` (`AGENTRY_DATA_DIR`).
    pub data_dir: Option<std::path::PathBuf>,
    /// The largest file upload, in bytes (`AGENTRY_FILES_MAX_BYTES`).
    pub files_max_bytes: u64,
    /// Files in an S3-compatible bucket instead of the data folder.
    pub files_s3: Option<S3Config>,
    /// The embedding model of hybrid knowledge ranking, `provider/model`
    /// (`AGENTRY_KNOWLEDGE_EMBEDDING_MODEL`): a provider of kind `openai` (any server with
    /// `/v1/embeddings`) or `mock/lexical`; unset or blank: BM25 alone (docs/knowledge.md).
    pub knowledge_embedding_model: Option<String>,
    /// Providers defined in the file (in addition to the built-in `mock`).
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
}

/// File descriptors kept out of the default connection cap: database connections, provider
/// and tool sockets, log and database files.
pub const FD_RESERVE: u64 = 512;

/// The default cap on client connections: the soft open-files limit (read from
/// `/proc/self/limits`) less [`FD_RESERVE`], at least 64; `None` where the limit is unknown
/// or unlimited.
pub fn default_max_connections() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse::<u64>()
        .ok()?;
    usize::try_from(soft.saturating_sub(FD_RESERVE).max(64)).ok()
}

#[derive(Serialize)]
struct Defaults {
    addr: &'static str,
    database_url: &'static str,
    log_format: LogFormat,
    log: &'static str,
    json_limit_bytes: usize,
    request_body_timeout_secs: u64,
    default_model: &'static str,
    shutdown_timeout_secs: u64,
    provider_connect_timeout_secs: u64,
    provider_timeout_secs: u64,
    provider_total_timeout_secs: u64,
    provider_stream_idle_secs: u64,
    provider_max_retries: u32,
    provider_streams_per_connection: usize,
    provider_http_version: HttpVersion,
    history_max_messages: u32,
    history_max_chars: usize,
    conversation_cache_bytes: usize,
    max_tool_steps: u32,
    tool_timeout_secs: u64,
    tool_max_response_bytes: usize,
    tool_allowed_hosts: [&'static str; 0],
    mcp_start_timeout_secs: u64,
    mcp_max_restarts: u32,
    mcp_backoff_base_ms: u64,
    mcp_backoff_max_secs: u64,
    mcp_stop_grace_secs: u64,
    mcp_log_lines: usize,
    task_workers: usize,
    task_lease_secs: u64,
    task_poll_ms: u64,
    task_retry_base_ms: u64,
    eval_runners: usize,
    eval_lease_secs: u64,
    insights_idle_minutes: u64,
    insights_daily_cap: u64,
    insights_sweep_secs: u64,
    eval_poll_ms: u64,
    admin_username: &'static str,
    auth_disabled: bool,
    access_token_ttl_secs: u64,
    refresh_token_ttl_secs: u64,
    login_max_failures: u32,
    rate_limit_per_minute: u32,
    rate_limit_burst: u32,
    rate_limit_concurrency: u32,
    rate_limit_sync_ms: u64,
    cache_ttl_secs: u64,
    cache_sync_ms: u64,
    memory_trim_secs: u64,
    instance_queue_timeout_ms: u64,
    instance_queue_max: u32,
    metrics_prefix: &'static str,
    metrics_public: bool,
    files_max_bytes: u64,
}

const DEFAULTS: Defaults = Defaults {
    addr: "127.0.0.1:8080",
    database_url: DEFAULT_DATABASE_URL,
    log_format: LogFormat::Text,
    log: "info",
    json_limit_bytes: 1024 * 1024,
    request_body_timeout_secs: 30,
    default_model: "mock/echo",
    shutdown_timeout_secs: 30,
    provider_connect_timeout_secs: 10,
    provider_timeout_secs: 120,
    provider_total_timeout_secs: 150,
    provider_stream_idle_secs: 60,
    provider_max_retries: 2,
    provider_streams_per_connection: 100,
    provider_http_version: HttpVersion::Auto,
    history_max_messages: 50,
    history_max_chars: 32_000,
    conversation_cache_bytes: 8 * 1024 * 1024,
    max_tool_steps: 8,
    tool_timeout_secs: 10,
    tool_max_response_bytes: 64 * 1024,
    tool_allowed_hosts: [],
    mcp_start_timeout_secs: 60,
    mcp_max_restarts: 5,
    mcp_backoff_base_ms: 1000,
    mcp_backoff_max_secs: 60,
    mcp_stop_grace_secs: 3,
    mcp_log_lines: 500,
    task_workers: 2,
    task_lease_secs: 30,
    task_poll_ms: 1000,
    task_retry_base_ms: 5000,
    eval_runners: 1,
    eval_lease_secs: 30,
    insights_idle_minutes: 30,
    insights_daily_cap: 1000,
    insights_sweep_secs: 60,
    eval_poll_ms: 2000,
    admin_username: "admin",
    auth_disabled: false,
    access_token_ttl_secs: 15 * 60,
    refresh_token_ttl_secs: 30 * 24 * 3600,
    login_max_failures: 5,
    rate_limit_per_minute: 100,
    rate_limit_burst: 20,
    rate_limit_concurrency: 20,
    rate_limit_sync_ms: 250,
    cache_ttl_secs: 60,
    cache_sync_ms: 250,
    memory_trim_secs: 5,
    instance_queue_timeout_ms: 5000,
    instance_queue_max: 100,
    metrics_prefix: "agentry",
    metrics_public: false,
    files_max_bytes: 100 * 1024 * 1024,
};

/// `AGENTRY_*` variables that are not config keys: read elsewhere (the config file's path; the
/// server and key of the cluster commands), or by the test suites.
const NOT_CONFIG_KEYS: [&str; 3] = ["config", "server", "api_key"];

/// Whether an `AGENTRY_*` variable (prefix removed, any case) is a config key rather than one
/// read elsewhere or by the test suites (`AGENTRY_TEST_*`).
fn is_config_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !NOT_CONFIG_KEYS.contains(&key.as_str()) && !key.starts_with("test_")
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A configuration error with this reason.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl Config {
    /// The built-in defaults alone (what `make run` gets with an empty environment).
    ///
    /// # Errors
    /// Never in practice; the defaults are valid.
    pub fn defaults() -> Result<Self, ConfigError> {
        Figment::from(Serialized::defaults(DEFAULTS))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// Defaults, then `file` (or the file named by `AGENTRY_CONFIG`), then the environment.
    ///
    /// # Errors
    /// A missing file, a TOML syntax error, an unknown key or a value of the wrong type.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(DEFAULTS));
        let from_env = std::env::var_os("AGENTRY_CONFIG").map(std::path::PathBuf::from);
        if let Some(path) = file.map(Path::to_path_buf).or(from_env) {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig
            .merge(Env::prefixed("AGENTRY_").filter(|k| is_config_key(k.as_str())))
            .merge(Env::raw().only(&["database_url"]));
        let config: Self = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The data folder: `data_dir`, else the SQLite file's folder, else `./data`.
    pub fn data_folder(&self) -> std::path::PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let file = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))
            .map(|p| p.split('?').next().unwrap_or_default());
        match file
            .map(std::path::Path::new)
            .and_then(std::path::Path::parent)
        {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            Some(_) => std::path::PathBuf::from("."),
            None => std::path::PathBuf::from("data"),
        }
    }

    /// Checks values the types do not: the metrics prefix must make valid metric names.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let p = &self.metrics_prefix;
        let ok = p
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.len() <= 64
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(ConfigError(format!(
                "metrics_prefix '{p}' must be 1 to 64 characters of A-Z, a-z, 0-9 and '_', not starting with a digit"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_default_connection_cap_leaves_room_below_the_open_files_limit() {
        let cap = super::default_max_connections();
        if cfg!(target_os = "linux") {
            let cap = cap.expect("Linux reports an open-files limit");
            assert!(cap >= 64, "{cap}");
        }
    }

    #[test]
    fn test_variables_are_not_config_keys() {
        assert!(!is_config_key("TEST_REQUIRE_POSTGRES"));
        assert!(!is_config_key("test_database"));
        assert!(is_config_key("ADMIN_PASSWORD"));
        assert!(is_config_key("AUTH_DISABLED"));
        assert!(!is_config_key("CONFIG"));
        assert!(!is_config_key("SERVER") && !is_config_key("API_KEY"));
        assert!(is_config_key("ADDR"));
        assert!(is_config_key("Log_Format"));
    }

    #[test]
    fn defaults_are_the_pinned_ones() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://data/agentry.db");
        assert_eq!(c.default_model, "mock/echo");
        assert_eq!(c.admin_username, "admin");
        assert!(c.admin_password.is_none() && c.jwt_secret.is_none());
        assert!(!c.auth_disabled);
        assert_eq!(
            (
                c.rate_limit_per_minute,
                c.rate_limit_burst,
                c.rate_limit_concurrency
            ),
            (100, 20, 20)
        );
    }

    #[test]
    fn auth_secrets_stay_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.toml");
        std::fs::write(
            &file,
            "admin_password = \"pw-very-secret\"\njwt_secret = \"jwt-very-secret-jwt-very-secret-xx\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("pw-very-secret") && !shown.contains("jwt-very-secret"),
            "{shown}"
        );
    }

    #[test]
    fn file_values_apply_and_unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "addr = \"127.0.0.1:9999\"\n[[providers]]\nid = \"local\"\nkind = \"openai\"\napi_key = \"sk-secret\"\nmodels = [\"m1\"]\n").unwrap();
        let c = Config::load(Some(&good)).unwrap();
        assert_eq!(c.addr.port(), 9999);
        assert_eq!(c.providers.len(), 1);
        assert!(
            !format!("{c:?}").contains("sk-secret"),
            "secrets must not appear in Debug output"
        );

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "adr = \"127.0.0.1:9999\"\n").unwrap();
        let err = Config::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("adr"), "{err}");

        let missing = dir.path().join("missing.toml");
        assert!(Config::load(Some(&missing)).is_err());
    }

    #[test]
    fn the_embedding_model_is_a_key_unset_by_default() {
        assert_eq!(Config::defaults().unwrap().knowledge_embedding_model, None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "knowledge_embedding_model = \"mock/lexical\"\n").unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.knowledge_embedding_model.as_deref(), Some("mock/lexical"));
        std::fs::write(&file, "knowledge_embeding_model = \"mock/lexical\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("knowledge_embeding_model"), "{err}");
    }

    #[test]
    fn metrics_settings_are_checked() {
        let c = Config::defaults().unwrap();
        assert_eq!(
            (c.metrics_prefix.as_str(), c.metrics_public, c.metrics_addr),
            ("agentry", false, None)
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metrics.toml");
        std::fs::write(
            &file,
            "metrics_prefix = \"goagents\"\nmetrics_addr = \"127.0.0.1:9464\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.metrics_prefix, "goagents");
        assert_eq!(c.metrics_addr.map(|a| a.port()), Some(9464));
        std::fs::write(&file, "metrics_prefix = \"9bad-prefix\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("metrics_prefix"), "{err}");
    }

    #[test]
    fn provider_http_version_is_one_of_three_words() {
        assert_eq!(
            Config::defaults().unwrap().provider_http_version,
            HttpVersion::Auto
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("http.toml");
        std::fs::write(&file, "provider_http_version = \"http2\"\n").unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.provider_http_version, HttpVersion::Http2);

        std::fs::write(&file, "provider_http_version = \"h3\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("h3") && err.contains("http1"), "{err}");
    }
}
