//! [`InsightStore`] over diesel: conversation analyses and the aggregations insights read
//! (sums of 0/1 columns and averages, one statement per period; issue labels grouped by the
//! database).

use agentry_domain::agent::AgentId;
use agentry_domain::insight::{
    Analysis, ConversationAnalysis, IssueCount, Outcome, SENTIMENT_BAND, Tally,
};
use agentry_domain::ports::{IdleConversation, InsightStore};
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::OptionalExtension;
use diesel::dsl::{avg, count_star, sum};
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::connection::AnyConnection;
use crate::rows::{corrupt, parse_json};
use crate::schema::{conversation_analyses as ca, conversation_issues as ci, conversations};
use crate::store::DieselStore;
use crate::translate::query_error;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = ca, treat_none_as_null = true)]
struct AnalysisRow {
    conversation_id: String,
    agent_id: String,
    outcome: String,
    completed: i32,
    abandoned: i32,
    escalated: i32,
    task_completed: i32,
    sentiment: f64,
    positive: i32,
    negative: i32,
    issues: String,
    analyser: String,
    message_count: i32,
    response_ms: Option<f64>,
    last_message_at: NaiveDateTime,
    analysed_at: NaiveDateTime,
}

impl From<&ConversationAnalysis> for AnalysisRow {
    fn from(c: &ConversationAnalysis) -> Self {
        let a = &c.analysis;
        Self {
            conversation_id: c.conversation_id.clone(),
            agent_id: c.agent_id.to_string(),
            outcome: a.outcome.as_str().to_owned(),
            completed: i32::from(a.outcome == Outcome::Completed),
            abandoned: i32::from(a.outcome == Outcome::Abandoned),
            escalated: i32::from(a.outcome == Outcome::Escalated),
            task_completed: i32::from(a.task_completed),
            sentiment: a.sentiment,
            positive: i32::from(a.sentiment > SENTIMENT_BAND),
            negative: i32::from(a.sentiment < -SENTIMENT_BAND),
            issues: serde_json::Value::from(a.issues.clone()).to_string(),
            analyser: a.analyser.clone(),
            message_count: i32::try_from(c.message_count).unwrap_or(i32::MAX),
            response_ms: c.response_ms,
            last_message_at: c.last_message_at.naive_utc(),
            analysed_at: c.analysed_at.naive_utc(),
        }
    }
}

impl TryFrom<AnalysisRow> for ConversationAnalysis {
    type Error = Error;

    fn try_from(r: AnalysisRow) -> Result<Self> {
        let bad =
            |e: agentry_domain::Invalid| corrupt("conversation_analysis", &r.conversation_id, &e);
        Ok(Self {
            agent_id: AgentId::parse(&r.agent_id).map_err(bad)?,
            analysis: Analysis {
                outcome: Outcome::parse(&r.outcome).map_err(bad)?,
                task_completed: r.task_completed != 0,
                sentiment: r.sentiment,
                issues: parse_json(
                    "conversation_analysis",
                    &r.conversation_id,
                    "issues",
                    &r.issues,
                )?,
                analyser: r.analyser.clone(),
            },
            message_count: u64::try_from(r.message_count).unwrap_or(0),
            response_ms: r.response_ms,
            last_message_at: r.last_message_at.and_utc(),
            analysed_at: r.analysed_at.and_utc(),
            conversation_id: r.conversation_id,
        })
    }
}

fn unsigned(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// The start of a period with no start.
fn since(from: Option<DateTime<Utc>>) -> NaiveDateTime {
    from.unwrap_or(DateTime::<Utc>::UNIX_EPOCH).naive_utc()
}

type Sums = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
);

#[async_trait]
impl InsightStore for DieselStore {
    async fn idle_conversations(
        &self,
        from: DateTime<Utc>,
        idle_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<IdleConversation>> {
        let (from, idle) = (from.naive_utc(), idle_before.naive_utc());
        self.run(move |conn| {
            let rows: Vec<(String, String, i64, NaiveDateTime)> = conversations::table
                .left_join(ca::table.on(ca::conversation_id.eq(conversations::id)))
                .filter(conversations::updated_at.ge(from))
                .filter(conversations::updated_at.lt(idle))
                .filter(conversations::message_count.gt(0))
                .filter(
                    ca::conversation_id
                        .is_null()
                        .or(ca::last_message_at.lt(conversations::updated_at)),
                )
                .order((conversations::updated_at.asc(), conversations::id.asc()))
                .limit(i64::from(limit))
                .select((
                    conversations::id,
                    conversations::agent_id,
                    conversations::message_count,
                    conversations::updated_at,
                ))
                .load(conn)
                .map_err(query_error)?;
            rows.into_iter()
                .map(|(id, agent, count, updated)| {
                    Ok(IdleConversation {
                        agent_id: AgentId::parse(&agent)
                            .map_err(|e| corrupt("conversation", &id, &e))?,
                        id,
                        message_count: u64::try_from(count).unwrap_or(0),
                        updated_at: updated.and_utc(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn save_analysis(&self, analysis: &ConversationAnalysis) -> Result<()> {
        let row = AnalysisRow::from(analysis);
        let failed = i32::from(analysis.failed());
        let issues = analysis.analysis.issues.clone();
        self.run(move |conn| {
            conn.transaction(|c| {
                diesel::delete(ca::table.find(&row.conversation_id)).execute(c)?;
                diesel::delete(ci::table.filter(ci::conversation_id.eq(&row.conversation_id)))
                    .execute(c)?;
                diesel::insert_into(ca::table).values(&row).execute(c)?;
                let mut labels: Vec<&String> = issues.iter().collect();
                labels.sort();
                labels.dedup();
                for label in labels {
                    diesel::insert_into(ci::table)
                        .values((
                            ci::conversation_id.eq(&row.conversation_id),
                            ci::label.eq(label),
                            ci::agent_id.eq(&row.agent_id),
                            ci::failed.eq(failed),
                            ci::last_message_at.eq(row.last_message_at),
                        ))
                        .execute(c)?;
                }
                Ok::<_, DieselError>(())
            })
            .map_err(query_error)
        })
        .await
    }

    async fn get_analysis(&self, conversation_id: &str) -> Result<Option<ConversationAnalysis>> {
        let id = conversation_id.to_owned();
        self.run(move |conn| {
            ca::table
                .find(&id)
                .select(AnalysisRow::as_select())
                .first(conn)
                .optional()
                .map_err(query_error)?
                .map(ConversationAnalysis::try_from)
                .transpose()
        })
        .await
    }

    async fn tally(
        &self,
        agent: &AgentId,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<Tally> {
        let (agent, from, to) = (agent.to_string(), since(from), to.naive_utc());
        self.run(move |conn: &mut AnyConnection| {
            let sums: Sums = ca::table
                .filter(ca::agent_id.eq(&agent))
                .filter(ca::last_message_at.ge(from))
                .filter(ca::last_message_at.lt(to))
                .select((
                    count_star(),
                    sum(ca::completed),
                    sum(ca::abandoned),
                    sum(ca::escalated),
                    sum(ca::task_completed),
                    sum(ca::positive),
                    sum(ca::negative),
                    avg(ca::sentiment),
                    avg(ca::response_ms),
                    sum(ca::message_count),
                ))
                .first(conn)
                .map_err(query_error)?;
            let total = unsigned(Some(sums.0));
            #[allow(clippy::cast_precision_loss)]
            let length_avg = (total > 0).then(|| unsigned(sums.9) as f64 / total as f64);
            Ok(Tally {
                total,
                completed: unsigned(sums.1),
                abandoned: unsigned(sums.2),
                escalated: unsigned(sums.3),
                task_completed: unsigned(sums.4),
                positive: unsigned(sums.5),
                negative: unsigned(sums.6),
                sentiment_avg: sums.7,
                response_ms_avg: sums.8,
                length_avg,
            })
        })
        .await
    }

    async fn issue_counts(
        &self,
        agent: &AgentId,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<IssueCount>> {
        let (agent, from, to) = (agent.to_string(), since(from), to.naive_utc());
        self.run(move |conn| {
            let rows: Vec<(String, i64, Option<i64>)> = ci::table
                .filter(ci::agent_id.eq(&agent))
                .filter(ci::last_message_at.ge(from))
                .filter(ci::last_message_at.lt(to))
                .group_by(ci::label)
                .select((ci::label, count_star(), sum(ci::failed)))
                .order((count_star().desc(), ci::label.asc()))
                .limit(i64::from(limit))
                .load(conn)
                .map_err(query_error)?;
            Ok(rows
                .into_iter()
                .map(|(label, count, failed)| IssueCount {
                    label,
                    count: unsigned(Some(count)),
                    failed: unsigned(failed),
                })
                .collect())
        })
        .await
    }

    async fn analyses_since(&self, analyser: &str, since: DateTime<Utc>) -> Result<u64> {
        let (analyser, since) = (analyser.to_owned(), since.naive_utc());
        self.run(move |conn| {
            let n: i64 = ca::table
                .filter(ca::analyser.eq(&analyser))
                .filter(ca::analysed_at.ge(since))
                .count()
                .get_result(conn)
                .map_err(query_error)?;
            Ok(unsigned(Some(n)))
        })
        .await
    }

    async fn conversation_count(&self, agent: &AgentId) -> Result<u64> {
        let agent = agent.to_string();
        self.run(move |conn| {
            let n: i64 = conversations::table
                .filter(conversations::agent_id.eq(&agent))
                .count()
                .get_result(conn)
                .map_err(query_error)?;
            Ok(unsigned(Some(n)))
        })
        .await
    }
}
