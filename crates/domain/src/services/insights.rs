//! Agent status and conversation insights (seed 001): the analysis of idle conversations in
//! the background, on demand for an agent, and the aggregation of analyses over a period.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Map;

use crate::agent::{Agent, AgentRef};
use crate::auth::Principal;
use crate::error::Result;
use crate::insight::{
    ANALYSIS_INSTRUCTIONS, Analysis, BUILTIN_ANALYSER, ConversationAnalysis, IssueGroup, Period,
    Tally, analyse, group_issues, read_analysis, recommendations, transcript,
};
use crate::llm::{PromptMessage, Role};
use crate::page::Page;
use crate::ports::{Clock, ConversationStore, IdleConversation, InsightStore};
use crate::services::{AgentService, Memory, Params, Runtime, TurnRequest, TurnTarget};

/// How conversations are analysed.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightSettings {
    /// A conversation with no new message for this long is analysed.
    pub idle: Duration,
    /// The analysis model: an agent key or `provider/model`; `None`: the built-in analyser.
    pub model: Option<String>,
    /// Most analyses by the model in 24 hours; past it, the built-in analyser answers.
    pub daily_cap: u64,
    /// How often idle conversations are looked for.
    pub sweep: Duration,
    /// Conversations analysed per sweep at most.
    pub batch: u32,
}

impl Default for InsightSettings {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            model: None,
            daily_cap: 1_000,
            sweep: Duration::from_secs(60),
            batch: 100,
        }
    }
}

/// An agent's status (seed 001's `GET /agents/:id/status`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatusReport {
    /// The agent.
    pub agent: Agent,
    /// Its stored conversations.
    pub conversation_count: u64,
    /// Analysed conversations whose task was done, in percent (all time).
    pub task_completion_rate: f64,
    /// Mean sentiment of analysed conversations (all time).
    pub avg_sentiment: Option<f64>,
}

/// An agent's insights over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Insights {
    /// The agent.
    pub agent: Agent,
    /// The period asked for.
    pub period: Period,
    /// Its start, a UTC midnight (`None`: all time).
    pub from: Option<DateTime<Utc>>,
    /// Its end: the UTC midnight ending today (exclusive).
    pub to: DateTime<Utc>,
    /// This period's counts.
    pub current: Tally,
    /// The previous period's (same length), for trends; `None` for all time.
    pub previous: Option<Tally>,
    /// Issue groups, most frequent first.
    pub top_issues: Vec<IssueGroup>,
    /// What to do about them.
    pub recommendations: Vec<String>,
    /// Who analyses conversations.
    pub analyser: String,
}

/// The next UTC midnight after `now`: the end of today.
fn end_of_today(now: DateTime<Utc>) -> DateTime<Utc> {
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |m| m.and_utc());
    midnight + chrono::Duration::days(1)
}

/// The insights use cases. Cheap to clone.
#[derive(Clone)]
pub struct InsightService {
    store: Arc<dyn InsightStore>,
    conversations: Arc<dyn ConversationStore>,
    agents: AgentService,
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    settings: InsightSettings,
}

/// Most conversations one on-demand analysis covers.
pub const REANALYSE_MAX: u32 = 500;
/// Most messages of a conversation an analyser reads (the latest).
const MESSAGES_READ: u32 = 200;

impl InsightService {
    /// A service over `store`; a model analyser's turns run on `runtime`, counted apart from
    /// production traffic.
    pub fn new(
        store: Arc<dyn InsightStore>,
        conversations: Arc<dyn ConversationStore>,
        agents: AgentService,
        runtime: Runtime,
        clock: Arc<dyn Clock>,
        settings: InsightSettings,
    ) -> Self {
        Self {
            store,
            conversations,
            agents,
            runtime: runtime.counting_in(crate::metrics::Metrics::new()),
            clock,
            settings,
        }
    }

    fn analyser_name(&self) -> String {
        match &self.settings.model {
            Some(m) => format!("model {m}"),
            None => BUILTIN_ANALYSER.to_owned(),
        }
    }

    /// An agent's status.
    ///
    /// # Errors
    /// `NotFound` (also outside the caller's allowlist).
    pub async fn status(
        &self,
        caller: Option<&Principal>,
        agent: &AgentRef,
    ) -> Result<AgentStatusReport> {
        let agent = self.agents.get_for(caller, agent).await?;
        let all = self
            .store
            .tally(&agent.id, None, end_of_today(self.clock.now()))
            .await?;
        Ok(AgentStatusReport {
            conversation_count: self.store.conversation_count(&agent.id).await?,
            task_completion_rate: crate::insight::rate(all.task_completed, all.total),
            avg_sentiment: all.sentiment_avg.map(|s| (s * 100.0).round() / 100.0),
            agent,
        })
    }

    /// An agent's insights over `period`, with the previous period of the same length.
    ///
    /// # Errors
    /// `NotFound` (also outside the caller's allowlist).
    pub async fn insights(
        &self,
        caller: Option<&Principal>,
        agent: &AgentRef,
        period: Period,
    ) -> Result<Insights> {
        let agent = self.agents.get_for(caller, agent).await?;
        // Whole UTC days, today included: the analyses are rolled up per day.
        let to = end_of_today(self.clock.now());
        let (from, previous) = match period {
            Period::Days(d) => {
                let length = chrono::Duration::days(i64::from(d));
                let from = to - length;
                let previous = self
                    .store
                    .tally(&agent.id, Some(from - length), from)
                    .await?;
                (Some(from), Some(previous))
            }
            Period::All => (None, None),
        };
        let current = self.store.tally(&agent.id, from, to).await?;
        let counts = self.store.issue_counts(&agent.id, from, to, 50).await?;
        let top_issues = group_issues(&counts, 5);
        let recommendations = recommendations(&current, &top_issues);
        Ok(Insights {
            agent,
            period,
            from,
            to,
            current,
            previous,
            top_issues,
            recommendations,
            analyser: self.analyser_name(),
        })
    }

    /// Analyses the agent's conversations with a message in `period` again, now (at most
    /// [`REANALYSE_MAX`], the latest first); returns how many.
    ///
    /// # Errors
    /// `NotFound` (also outside the caller's allowlist).
    pub async fn reanalyse(
        &self,
        caller: Option<&Principal>,
        agent: &AgentRef,
        period: Period,
    ) -> Result<u64> {
        let agent = self.agents.get_for(caller, agent).await?;
        let agents = [agent.id.clone()];
        let since = match period {
            Period::Days(d) => Some(self.clock.now() - chrono::Duration::days(i64::from(d))),
            Period::All => None,
        };
        let page = Page::new(Some(100), None)?;
        let mut done = 0;
        let mut offset = 0;
        while done < u64::from(REANALYSE_MAX) {
            let page = Page::new(Some(page.limit()), Some(offset))?;
            let listed = self
                .conversations
                .list_conversations(Some(&agents), page)
                .await?;
            if listed.items.is_empty() {
                break;
            }
            offset += listed.items.len() as u64;
            for c in listed.items {
                if since.is_some_and(|s| c.updated_at < s) || c.message_count == 0 {
                    continue;
                }
                let idle = IdleConversation {
                    id: c.id,
                    agent_id: c.agent_id,
                    message_count: c.message_count,
                    updated_at: c.updated_at,
                };
                self.analyse_one(&idle).await?;
                done += 1;
                if done >= u64::from(REANALYSE_MAX) {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// Analyses one conversation and stores the analysis.
    async fn analyse_one(&self, c: &IdleConversation) -> Result<()> {
        let messages = self
            .conversations
            .last_messages(&c.id, MESSAGES_READ)
            .await?;
        let analysis = self.analysis_of(&messages).await;
        let latencies: Vec<u64> = messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .filter_map(|m| m.latency_ms)
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let response_ms = (!latencies.is_empty())
            .then(|| latencies.iter().sum::<u64>() as f64 / latencies.len() as f64);
        self.store
            .save_analysis(&ConversationAnalysis {
                conversation_id: c.id.clone(),
                agent_id: c.agent_id.clone(),
                analysis,
                message_count: c.message_count,
                response_ms,
                last_message_at: c.updated_at,
                analysed_at: self.clock.now(),
            })
            .await
    }

    /// The analysis: the model's while under its daily cap (the built-in analyser's when the
    /// model fails or the cap is reached, saying so), else the built-in analyser's.
    async fn analysis_of(&self, messages: &[crate::conversation::Message]) -> Analysis {
        let Some(model) = &self.settings.model else {
            return analyse(messages);
        };
        let name = self.analyser_name();
        let since = self.clock.now() - chrono::Duration::hours(24);
        match self.store.analyses_since(&name, since).await {
            Ok(n) if n >= self.settings.daily_cap => {
                let mut a = analyse(messages);
                a.analyser = format!(
                    "{BUILTIN_ANALYSER}; the model's daily cap of {} was reached",
                    self.settings.daily_cap
                );
                return a;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not count today's analyses"),
        }
        let request = TurnRequest {
            instructions: Some(ANALYSIS_INSTRUCTIONS.to_owned()),
            params: Params {
                temperature: Some(0.0),
                ..Params::default()
            },
            ..TurnRequest::new(
                vec![PromptMessage::new(Role::User, transcript(messages))],
                Memory::Run {
                    run_id: None,
                    log_meta: Map::from_iter([("insights".to_owned(), serde_json::json!(true))]),
                    log_now: false,
                },
            )
        };
        let target = TurnTarget::AgentOrModel {
            name: model.clone(),
            version: None,
        };
        let answered = match self.runtime.start_turn(None, target, request).await {
            Ok(turn) => turn.finish().await.map(|o| o.text),
            Err(e) => Err(e),
        };
        let why = match answered.map(|text| read_analysis(&text, &name)) {
            Ok(Ok(a)) => return a,
            Ok(Err(why)) => why,
            Err(e) => e.to_string(),
        };
        tracing::warn!(model = %model, reason = %why, "the analysis model failed; the built-in analyser answered");
        let mut a = analyse(messages);
        a.analyser = format!("{BUILTIN_ANALYSER}; the model failed: {why}");
        a
    }

    /// Analyses idle conversations every `sweep`, forever (every replica runs it; two
    /// replicas may analyse one conversation twice, the second result replacing the first).
    pub fn sweeper(&self) -> impl Future<Output = ()> + Send + 'static {
        let service = self.clone();
        async move {
            let mut watermark = DateTime::<Utc>::UNIX_EPOCH;
            let mut every =
                tokio::time::interval(service.settings.sweep.max(Duration::from_millis(10)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let idle_before = service.clock.now()
                    - chrono::Duration::from_std(service.settings.idle)
                        .unwrap_or(chrono::Duration::MAX);
                let batch = match service
                    .store
                    .idle_conversations(watermark, idle_before, service.settings.batch)
                    .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look for idle conversations");
                        continue;
                    }
                };
                for c in batch {
                    if let Err(e) = service.analyse_one(&c).await {
                        tracing::warn!(conversation = %c.id, error = %e, "could not analyse a conversation; tried again next sweep");
                        break;
                    }
                    watermark = c.updated_at;
                }
            }
        }
    }
}
