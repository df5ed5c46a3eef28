//! Metrics: `GET /api/v1/metrics` (seed 004's system metrics as JSON) and `GET /metrics`
//! (Prometheus text exposition, version 0.0.4). Both read the same counters
//! ([`agentry_domain::metrics::Metrics`]) of the answering replica; `/metrics` names start
//! with the configured prefix (`metrics_prefix`, `agentry` by default) instead of `agentry`.
//! Who may read `/metrics` is in docs/observability.md.

use std::fmt::Write as _;

use actix_web::{HttpResponse, web};
use agentry_domain::agent::{AgentFilter, AgentStatus};
use agentry_domain::metrics::{Family, Kind, Value};
use agentry_domain::page::Page;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};

/// The JSON route, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").get(system_metrics));
}

/// The Prometheus route, at the root.
pub fn configure_root(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").get(prometheus_metrics));
}

/// How `/metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSettings {
    /// Replaces `agentry` at the start of every metric name (`goagents` gives
    /// `goagents_requests_total`).
    pub prefix: String,
    /// `/metrics` on the main listener needs no credential.
    pub public: bool,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        Self {
            prefix: "agentry".to_owned(),
            public: false,
        }
    }
}

/// The process.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemView {
    /// Seconds since this server started.
    pub uptime_seconds: u64,
    /// Resident memory, in MiB (`null` where the platform does not tell).
    pub memory_usage_mb: Option<f64>,
    /// CPU used by the process since the previous reading, in percent of one core.
    pub cpu_usage_percent: Option<f64>,
    /// Tokio tasks alive (in place of seed 004's goroutines).
    pub tokio_tasks: Option<u64>,
    /// Operating-system threads of the process.
    pub threads: Option<u64>,
    /// The server's version.
    pub version: String,
    /// When it started, RFC 3339 UTC.
    pub started_at: String,
}

/// Clusters by state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClustersCount {
    /// Every cluster.
    pub total: u64,
    /// Running (at least one agent not scaled to zero).
    pub running: u64,
    /// Scaling (an agent draining to fewer instances) or being applied.
    pub scaling: u64,
    /// Every agent scaled to zero.
    pub idle: u64,
}

/// Agents by state.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentsCount {
    /// Every agent.
    pub total: u64,
    /// Active agents that are not scaled to zero.
    pub active: u64,
    /// Cluster agents scaled to zero on this replica.
    pub idle: u64,
}

/// Agent turns (every surface: chat, SSE, Responses, Chat Completions, runs on agents).
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestsCount {
    /// Turns that ended since this server started.
    pub total: u64,
    /// The share that finished (`null` before the first).
    pub success_rate: Option<f64>,
    /// Their average response time, in milliseconds (`null` before the first).
    pub avg_response_time_ms: Option<f64>,
    /// Turns that ended in the last 60 seconds.
    pub requests_per_minute: u64,
    /// Turns running now.
    pub in_flight: u64,
    /// Requests refused by the rate limits (429).
    pub rate_limited: u64,
}

/// Seed 004's system metrics.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemMetrics {
    /// The process.
    pub system: SystemView,
    /// Clusters.
    pub clusters: ClustersCount,
    /// Agents.
    pub agents: AgentsCount,
    /// Requests.
    pub requests: RequestsCount,
    /// `replica`: counts and states are the answering replica's.
    pub scope: &'static str,
}

fn number(families: &[Family], name: &str) -> Option<f64> {
    families
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.number(&[]))
}

/// System, cluster, agent and request metrics of the answering replica (seed 004).
#[utoipa::path(get, path = "/api/v1/metrics", tag = "ops",
    responses((status = 200, body = SystemMetrics), (status = 401, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn system_metrics(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let families = state.metrics.families();
    let totals = state.metrics.totals();
    let clusters = state.clusters.list_all().await?;
    let instances = state.clusters.instances();
    let (mut running, mut scaling, mut idle_clusters, mut idle_agents) = (0, 0, 0, 0u64);
    for c in &clusters {
        let states: Vec<_> = c
            .members
            .iter()
            .filter_map(|m| instances.state(m.key.as_str()))
            .collect();
        idle_agents += states.iter().filter(|s| s.status == "idle").count() as u64;
        if states.iter().any(|s| s.status == "scaling") {
            scaling += 1;
        } else if !states.is_empty() && states.iter().all(|s| s.status == "idle") {
            idle_clusters += 1;
        } else {
            running += 1;
        }
    }
    let one = Page::new(Some(1), None)?;
    let total_agents = state.agents.list(&AgentFilter::default(), one).await?.total;
    let active = AgentFilter {
        status: Some(AgentStatus::Active),
        ..AgentFilter::default()
    };
    let active_agents = state.agents.list(&active, one).await?.total;
    let body = SystemMetrics {
        system: SystemView {
            uptime_seconds: state.metrics.uptime().as_secs(),
            memory_usage_mb: number(&families, "process_resident_memory_bytes")
                .map(|b| (b / (1024.0 * 1024.0) * 10.0).round() / 10.0),
            cpu_usage_percent: number(&families, "agentry_cpu_usage_percent"),
            tokio_tasks: number(&families, "agentry_tokio_tasks").map(|n| n as u64),
            threads: number(&families, "process_threads").map(|n| n as u64),
            version: state.version.clone(),
            started_at: crate::routes::rfc3339(state.metrics.started_at()),
        },
        clusters: ClustersCount {
            total: clusters.len() as u64,
            running,
            scaling,
            idle: idle_clusters,
        },
        agents: AgentsCount {
            total: total_agents,
            active: active_agents.saturating_sub(idle_agents),
            idle: idle_agents,
        },
        requests: RequestsCount {
            total: totals.requests,
            success_rate: (totals.requests > 0)
                .then(|| totals.succeeded as f64 / totals.requests as f64),
            avg_response_time_ms: (totals.requests > 0)
                .then(|| totals.latency.as_secs_f64() * 1000.0 / totals.requests as f64),
            requests_per_minute: totals.last_minute,
            in_flight: totals.in_flight,
            rate_limited: state.rate_limits.refused_total(),
        },
        scope: "replica",
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Every family of the answering replica, the HTTP layer's included.
fn all_families(state: &AppState) -> Vec<Family> {
    let mut families = state.metrics.families();
    families.push(
        Family::new(
            "agentry_rate_limited_total",
            "Requests refused with 429 by the per-client rate and concurrency limits",
            Kind::Counter,
        )
        .with(Vec::new(), state.rate_limits.refused_total() as f64),
    );
    families.push(
        Family::new(
            "agentry_build_info",
            "The server's version (always 1)",
            Kind::Gauge,
        )
        .with(vec![("version", state.version.clone())], 1.0),
    );
    families
}

/// Prometheus metrics (text exposition format 0.0.4): turns by agent and status, response
/// times, tokens by agent and model, provider latency and errors, rate-limited requests,
/// open streams, instance slots and cold starts, the database pool, the process.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "A credential is needed unless `metrics_public` or `metrics_addr` is set", body = ErrorEnvelope)))]
pub async fn prometheus_metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = render(&all_families(&state), &state.prometheus.prefix);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// The name with the configured prefix in place of `agentry`.
fn prefixed(name: &str, prefix: &str) -> String {
    match name.strip_prefix("agentry_") {
        Some(rest) => format!("{prefix}_{rest}"),
        None => name.to_owned(),
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, String)], extra: Option<(&str, String)>) -> String {
    let mut all: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some((k, v)) = extra {
        all.push(format!("{k}=\"{}\"", escape_label(&v)));
    }
    if all.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", all.join(","))
    }
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// The text exposition of `families`, names prefixed.
pub fn render(families: &[Family], prefix: &str) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for f in families {
        let name = prefixed(f.name, prefix);
        let _ = writeln!(out, "# HELP {name} {}", f.help.replace('\n', " "));
        let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
        for s in &f.samples {
            match &s.value {
                Value::Number(n) => {
                    let _ = writeln!(out, "{name}{} {}", labels(&s.labels, None), float(*n));
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    for (le, n) in buckets {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {n}",
                            labels(&s.labels, Some(("le", float(*le))))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {count}",
                        labels(&s.labels, Some(("le", "+Inf".to_owned())))
                    );
                    let _ = writeln!(out, "{name}_sum{} {}", labels(&s.labels, None), float(*sum));
                    let _ = writeln!(out, "{name}_count{} {count}", labels(&s.labels, None));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_escaped_families() {
        let families = vec![
            Family::new("agentry_requests_total", "Turns", Kind::Counter)
                .with(vec![("agent", "a\"b\\c".into())], 3.0),
            Family::new("process_threads", "Threads", Kind::Gauge).with(Vec::new(), 7.0),
        ];
        let text = render(&families, "goagents");
        assert!(
            text.contains("# TYPE goagents_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("goagents_requests_total{agent=\"a\\\"b\\\\c\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("process_threads 7\n"), "{text}");
    }
}
