//! [`InsightStore`] over diesel: conversation analyses, and the daily roll-ups insights read
//! (`insight_days`, `insight_issue_days`), kept in the transaction that writes an analysis:
//! the analysis it replaces is taken out of its day, the new one added to its own. A period's
//! figures then read at most one row per day (and label), whatever the number of
//! conversations.

use agentry_domain::agent::AgentId;
use agentry_domain::insight::{
    Analysis, ConversationAnalysis, IssueCount, Outcome, SENTIMENT_BAND, Tally,
};
use agentry_domain::ports::{IdleConversation, InsightStore};
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::OptionalExtension;
use diesel::dsl::sum;
use diesel::prelude::*;

use crate::connection::AnyConnection;
use crate::connection::on_backend;
use crate::rows::{corrupt, parse_json};
use crate::schema::{
    conversation_analyses as ca, conversations, insight_days as days, insight_issue_days as idays,
};
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
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
);

/// The UTC midnight of `t`: the day an analysis counts in.
fn day_of(t: NaiveDateTime) -> NaiveDateTime {
    t.date().and_hms_opt(0, 0, 0).unwrap_or(t)
}

/// Adds (`sign` 1) or takes out (`sign` -1) an analysis's share of its day's roll-ups.
fn roll_up(c: &mut AnyConnection, a: &AnalysisRow, sign: i32) -> QueryResult<()> {
    use diesel::upsert::excluded;
    let day = day_of(a.last_message_at);
    let f = f64::from(sign);
    let failed = i32::from(a.completed == 0 || a.task_completed == 0);
    let values = (
        days::agent_id.eq(&a.agent_id),
        days::day.eq(day),
        days::conversations.eq(sign),
        days::completed.eq(sign * a.completed),
        days::abandoned.eq(sign * a.abandoned),
        days::escalated.eq(sign * a.escalated),
        days::task_completed.eq(sign * a.task_completed),
        days::positive.eq(sign * a.positive),
        days::negative.eq(sign * a.negative),
        days::sentiment_sum.eq(f * a.sentiment),
        days::response_ms_sum.eq(f * a.response_ms.unwrap_or(0.0)),
        days::responses.eq(sign * i32::from(a.response_ms.is_some())),
        days::messages.eq(sign * a.message_count),
    );
    on_backend!(&mut *c, |b| diesel::insert_into(days::table)
        .values(values)
        .on_conflict((days::agent_id, days::day))
        .do_update()
        .set((
            days::conversations.eq(days::conversations + excluded(days::conversations)),
            days::completed.eq(days::completed + excluded(days::completed)),
            days::abandoned.eq(days::abandoned + excluded(days::abandoned)),
            days::escalated.eq(days::escalated + excluded(days::escalated)),
            days::task_completed.eq(days::task_completed + excluded(days::task_completed)),
            days::positive.eq(days::positive + excluded(days::positive)),
            days::negative.eq(days::negative + excluded(days::negative)),
            days::sentiment_sum.eq(days::sentiment_sum + excluded(days::sentiment_sum)),
            days::response_ms_sum.eq(days::response_ms_sum + excluded(days::response_ms_sum)),
            days::responses.eq(days::responses + excluded(days::responses)),
            days::messages.eq(days::messages + excluded(days::messages)),
        ))
        .execute(b))?;
    let mut labels: Vec<String> = serde_json::from_str(&a.issues).unwrap_or_default();
    labels.sort();
    labels.dedup();
    for label in labels {
        on_backend!(&mut *c, |b| diesel::insert_into(idays::table)
            .values((
                idays::agent_id.eq(&a.agent_id),
                idays::day.eq(day),
                idays::label.eq(&label),
                idays::conversations.eq(sign),
                idays::failed.eq(sign * failed),
            ))
            .on_conflict((idays::agent_id, idays::day, idays::label))
            .do_update()
            .set((
                idays::conversations.eq(idays::conversations + excluded(idays::conversations)),
                idays::failed.eq(idays::failed + excluded(idays::failed)),
            ))
            .execute(b))?;
    }
    Ok(())
}

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
        self.run(move |conn| {
            conn.transaction(|c| {
                let old = on_backend!(&mut *c, |b| diesel::delete(
                    ca::table.find(&row.conversation_id)
                )
                .returning(AnalysisRow::as_returning())
                .get_result::<AnalysisRow>(b)
                .optional())?;
                if let Some(old) = &old {
                    roll_up(c, old, -1)?;
                }
                diesel::insert_into(ca::table).values(&row).execute(c)?;
                roll_up(c, &row, 1)
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
            let sums: Sums = days::table
                .filter(days::agent_id.eq(&agent))
                .filter(days::day.ge(from))
                .filter(days::day.lt(to))
                .select((
                    sum(days::conversations),
                    sum(days::completed),
                    sum(days::abandoned),
                    sum(days::escalated),
                    sum(days::task_completed),
                    sum(days::positive),
                    sum(days::negative),
                    sum(days::sentiment_sum),
                    sum(days::response_ms_sum),
                    sum(days::responses),
                    sum(days::messages),
                ))
                .first(conn)
                .map_err(query_error)?;
            let total = unsigned(sums.0);
            #[allow(clippy::cast_precision_loss)]
            let per = |x: f64, n: u64| (n > 0).then(|| x / n as f64);
            #[allow(clippy::cast_precision_loss)]
            Ok(Tally {
                total,
                completed: unsigned(sums.1),
                abandoned: unsigned(sums.2),
                escalated: unsigned(sums.3),
                task_completed: unsigned(sums.4),
                positive: unsigned(sums.5),
                negative: unsigned(sums.6),
                sentiment_avg: per(sums.7.unwrap_or(0.0), total),
                response_ms_avg: per(sums.8.unwrap_or(0.0), unsigned(sums.9)),
                length_avg: per(unsigned(sums.10) as f64, total),
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
            let rows: Vec<(String, Option<i64>, Option<i64>)> = idays::table
                .filter(idays::agent_id.eq(&agent))
                .filter(idays::day.ge(from))
                .filter(idays::day.lt(to))
                .group_by(idays::label)
                .select((idays::label, sum(idays::conversations), sum(idays::failed)))
                .order((sum(idays::conversations).desc(), idays::label.asc()))
                .limit(i64::from(limit))
                .load(conn)
                .map_err(query_error)?;
            Ok(rows
                .into_iter()
                .map(|(label, count, failed)| IssueCount {
                    label,
                    count: unsigned(count),
                    failed: unsigned(failed),
                })
                .filter(|i| i.count > 0)
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
