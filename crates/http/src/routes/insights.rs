//! `GET /api/v1/agents/{agent}/status` and `…/insights` (seed 001's shapes, camelCase), and
//! `POST …/insights/analyze` to analyse an agent's conversations again now
//! (`docs/insights.md`).

use actix_web::{HttpResponse, web};
use agentry_domain::agent::AgentRef;
use agentry_domain::insight::{Period, Tally, rate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::routes::rfc3339;

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/agents/{agent}/status").route(web::get().to(agent_status)))
        .service(web::resource("/agents/{agent}/insights").route(web::get().to(agent_insights)))
        .service(
            web::resource("/agents/{agent}/insights/analyze").route(web::post().to(analyze_agent)),
        );
}

fn agent_ref(raw: &str) -> Result<AgentRef, crate::error::ApiError> {
    AgentRef::parse(raw).map_err(|_| agentry_domain::Error::not_found("agent", raw).into())
}

/// Seed 001's status metrics.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusMetrics {
    /// Stored conversations.
    pub conversation_count: u64,
    /// Analysed conversations whose task was done, in percent.
    pub task_completion_rate: f64,
    /// Mean sentiment of analysed conversations, -1 to 1 (`null` before any analysis).
    pub avg_sentiment: Option<f64>,
}

/// An agent's status (seed 001).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatusView {
    /// The agent's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `active`, `draft` or `archived`.
    pub status: &'static str,
    /// `idle`, `analyzing`, `optimizing`, `testing` or `failed`.
    #[schema(example = "idle")]
    pub optimization_state: &'static str,
    /// Figures over its analysed conversations.
    pub metrics: StatusMetrics,
    /// When an optimisation last completed (`null`: never).
    pub last_optimized: Option<String>,
}

/// Get an agent's status: its state and figures (seed 001).
#[utoipa::path(get, path = "/api/v1/agents/{agent}/status", tag = "insights",
    params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 200, body = AgentStatusView), (status = 404, body = ErrorEnvelope)))]
pub async fn agent_status(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let report = state
        .insights
        .status(Some(&caller), &agent_ref(&path)?)
        .await?;
    let (optimization_state, last_optimized) = state.optimizations.state(&report.agent).await?;
    Ok(HttpResponse::Ok().json(AgentStatusView {
        id: report.agent.id.to_string(),
        name: report.agent.name.to_string(),
        status: report.agent.status.as_str(),
        optimization_state,
        metrics: StatusMetrics {
            conversation_count: report.conversation_count,
            task_completion_rate: report.task_completion_rate,
            avg_sentiment: report.avg_sentiment,
        },
        last_optimized: last_optimized.map(rfc3339),
    }))
}

/// The period of insights.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InsightsQuery {
    /// `7`, `30` (default), `90` or `all`.
    #[param(value_type = Option<String>, pattern = "^(7|30|90|all)?$")]
    pub days: Option<String>,
}

/// The schema of `period.days`: a number of days or `"all"`.
fn period_days() -> utoipa::openapi::Schema {
    crate::schema::raw(serde_json::json!({
        "description": "`7`, `30`, `90`, or `\"all\"`.",
        "anyOf": [{"type": "integer", "enum": [7, 30, 90]}, {"type": "string", "enum": ["all"]}]
    }))
}

/// The period covered.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodView {
    /// `7`, `30`, `90`, or `"all"`.
    #[schema(schema_with = period_days)]
    pub days: serde_json::Value,
    /// Start: the UTC midnight starting the first day (`null` for all time).
    pub from: Option<String>,
    /// End: the last second of today (UTC).
    pub to: String,
}

/// Conversations by outcome.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightSummary {
    /// Analysed conversations whose last message is in the period.
    pub total_conversations: u64,
    /// Outcome completed.
    pub completed_conversations: u64,
    /// Outcome abandoned.
    pub abandoned_conversations: u64,
    /// Outcome escalated (to a human).
    pub escalated_conversations: u64,
    /// Completed, in percent.
    pub completion_rate: f64,
}

/// Task completion and its trend.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCompletion {
    /// Conversations whose task was done, in percent.
    pub rate: f64,
    /// The change against the previous period of the same length, in percentage points
    /// (`"+3.2%"`); `null` for all time or when the previous period had no conversation.
    pub trend: Option<String>,
}

/// Sentiment distribution, in percent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Distribution {
    /// Above 0.2.
    pub positive: f64,
    /// From -0.2 to 0.2.
    pub neutral: f64,
    /// Below -0.2.
    pub negative: f64,
}

/// Sentiment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentimentView {
    /// Mean, -1 to 1 (`null`: no conversation).
    pub average: Option<f64>,
    /// Shares.
    pub distribution: Distribution,
}

/// The period's figures.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightMetrics {
    /// Task completion.
    pub task_completion: TaskCompletion,
    /// Sentiment.
    pub sentiment: SentimentView,
    /// Mean time to answer, in seconds (`null`: none recorded).
    pub avg_response_time: Option<f64>,
    /// Mean messages per conversation.
    pub avg_conversation_length: Option<f64>,
}

/// An issue group.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueView {
    /// Its label.
    pub issue: String,
    /// Conversations with it.
    pub frequency: u64,
    /// `high`, `medium` or `low`: the share of those conversations that failed.
    pub impact: &'static str,
}

/// An agent's insights (seed 001).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightsView {
    /// The agent's id.
    pub agent_id: String,
    /// The period.
    pub period: PeriodView,
    /// By outcome.
    pub summary: InsightSummary,
    /// Figures.
    pub metrics: InsightMetrics,
    /// The most frequent issues, alike labels grouped.
    pub top_issues: Vec<IssueView>,
    /// What to do about them.
    pub recommendations: Vec<String>,
    /// Who analysed the conversations (the built-in analyser says it is one).
    pub analyser: String,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn trend(current: &Tally, previous: Option<&Tally>) -> Option<String> {
    let previous = previous.filter(|p| p.total > 0)?;
    let delta =
        rate(current.task_completed, current.total) - rate(previous.task_completed, previous.total);
    Some(format!("{:+.1}%", round(delta, 1)))
}

/// Get an agent's insights over 7, 30 (default), 90 days or all time (seed 001).
#[utoipa::path(get, path = "/api/v1/agents/{agent}/insights", tag = "insights",
    params(("agent" = String, Path, description = "Agent id or key"), InsightsQuery),
    responses((status = 200, body = InsightsView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn agent_insights(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<InsightsQuery>,
) -> ApiResult<HttpResponse> {
    let period = Period::parse(query.days.as_deref())?;
    let i = state
        .insights
        .insights(Some(&caller), &agent_ref(&path)?, period)
        .await?;
    let c = &i.current;
    let neutral = c.total.saturating_sub(c.positive + c.negative);
    Ok(HttpResponse::Ok().json(InsightsView {
        agent_id: i.agent.id.to_string(),
        period: PeriodView {
            days: match period {
                Period::Days(d) => serde_json::json!(d),
                Period::All => serde_json::json!("all"),
            },
            from: i.from.map(rfc3339),
            to: rfc3339(i.to - chrono::Duration::seconds(1)),
        },
        summary: InsightSummary {
            total_conversations: c.total,
            completed_conversations: c.completed,
            abandoned_conversations: c.abandoned,
            escalated_conversations: c.escalated,
            completion_rate: rate(c.completed, c.total),
        },
        metrics: InsightMetrics {
            task_completion: TaskCompletion {
                rate: rate(c.task_completed, c.total),
                trend: trend(c, i.previous.as_ref()),
            },
            sentiment: SentimentView {
                average: c.sentiment_avg.map(|s| round(s, 2)),
                distribution: Distribution {
                    positive: rate(c.positive, c.total),
                    neutral: rate(neutral, c.total),
                    negative: rate(c.negative, c.total),
                },
            },
            avg_response_time: c.response_ms_avg.map(|ms| round(ms / 1000.0, 1)),
            avg_conversation_length: c.length_avg.map(|l| round(l, 1)),
        },
        top_issues: i
            .top_issues
            .iter()
            .map(|g| IssueView {
                issue: g.issue.clone(),
                frequency: g.frequency,
                impact: g.impact,
            })
            .collect(),
        recommendations: i.recommendations,
        analyser: i.analyser,
    }))
}

/// How many conversations were analysed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Analyzed {
    /// Conversations analysed now.
    pub analyzed: u64,
}

/// Analyse the agent's conversations of the period again, now (at most 500, latest first),
/// without waiting for them to be idle.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/insights/analyze", tag = "insights",
    params(("agent" = String, Path, description = "Agent id or key"), InsightsQuery),
    responses((status = 200, body = Analyzed), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn analyze_agent(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<InsightsQuery>,
) -> ApiResult<HttpResponse> {
    let period = Period::parse(query.days.as_deref())?;
    let analyzed = state
        .insights
        .reanalyse(Some(&caller), &agent_ref(&path)?, period)
        .await?;
    Ok(HttpResponse::Ok().json(Analyzed { analyzed }))
}
