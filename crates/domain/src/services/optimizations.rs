//! Prompt optimisation (seed 001's `optimizationState`, issue 17): the use cases and the runner.
//!
//! An optimisation is durable work like an evaluation run: stored `pending`, claimed by a
//! runner on any replica (a lease renewed at every step), and resumable — its progress (the
//! evaluation run of the current instructions, the candidates, the testing run) is stored
//! after each step, so a runner that takes it over goes on from there. The steps:
//!
//! 1. `analyzing`: the agent's live instructions are the baseline; the insights' top issues
//!    of the last 30 days are read, and the baseline runs alone on the test set.
//! 2. `optimizing`: the writer (`optimizer_model`, or the built-in rule-based one) writes
//!    candidates from the failing cases and the issues.
//! 3. `testing`: one evaluation run holds the baseline and every candidate (same cases, same
//!    conditions). A candidate that beats the baseline's pass rate strictly is saved as a
//!    **draft version** of the agent; the evidence (each score, the cases fixed and broken)
//!    is kept with the optimisation. Nothing is published.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::agent::{Agent, AgentRef};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::eval::{Configuration, EvalResult, EvalRun, EvalRunId, NewEvalRun, Subject};
use crate::event::{Event, EventBus};
use crate::insight::Period;
use crate::llm::{PromptMessage, Role};
use crate::optimization::{
    Candidate, Failure, OPTIMIZER_INSTRUCTIONS, Optimization, OptimizationId, OptimizationRequest,
    Phase, Progress, Score, builtin_candidates, evidence, optimizer_prompt, read_candidates,
    state_of,
};
use crate::page::{Page, Paged};
use crate::ports::{Clock, OptimizationStore};
use crate::services::dormant::FirstWork;
use crate::services::{
    AgentService, EvalService, InsightService, Memory, Params, Runtime, TurnRequest, TurnTarget,
    VersionService,
};
use crate::task::TaskStatus;

/// Longest wait for the model writer's answer.
const WRITER_TIMEOUT: Duration = Duration::from_secs(120);

/// The optimisation use cases. Cheap to clone.
#[derive(Clone)]
pub struct OptimizationService {
    store: Arc<dyn OptimizationStore>,
    agents: AgentService,
    versions: VersionService,
    evals: EvalService,
    insights: InsightService,
    runtime: Runtime,
    events: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    /// The runners' lease and poll (the evaluation runs').
    lease: Duration,
    poll: Duration,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// An optimisation's status on the event bus (channels `optimization.{id}` and
/// `optimizations`).
fn status_event(o: &Optimization) -> Event {
    let mut payload = Map::new();
    payload.insert("type".into(), json!("optimization.status"));
    payload.insert("optimization_id".into(), json!(o.id.as_str()));
    payload.insert("agent_id".into(), json!(o.agent_id.as_str()));
    payload.insert("status".into(), json!(o.status.as_str()));
    payload.insert("phase".into(), json!(o.phase.map(Phase::as_str)));
    payload.insert("draft_version".into(), json!(o.draft_version));
    Event {
        channels: vec![format!("optimization.{}", o.id), "optimizations".to_owned()],
        agent_key: None,
        payload,
    }
}

/// Whether `caller` may see `o`: callers limited to some agents see the ones they started.
fn visible(caller: Option<&Principal>, o: &Optimization) -> bool {
    caller.is_none_or(|p| {
        p.agents.is_none() || o.created_by.as_deref() == Some(p.created_by().as_str())
    })
}

impl OptimizationService {
    /// A service over `store`; its evaluation runs go through `evals`, the model writer's
    /// turns through `runtime` (counted apart from production traffic).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn OptimizationStore>,
        agents: AgentService,
        versions: VersionService,
        evals: EvalService,
        insights: InsightService,
        runtime: Runtime,
        events: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        lease: Duration,
        poll: Duration,
    ) -> Self {
        Self {
            store,
            agents,
            versions,
            evals,
            insights,
            runtime: runtime.counting_in(crate::metrics::Metrics::new()),
            events,
            clock,
            lease,
            poll,
        }
    }

    /// Starts an optimisation of `agent` (`pending`; a runner takes it).
    ///
    /// # Errors
    /// `NotFound` (agent, also outside the caller's allowlist), `Invalid` (a test set that
    /// does not exist or has no case, an optimizer model nobody serves), `Conflict` (the
    /// agent has an optimisation pending or running).
    pub async fn start(
        &self,
        caller: Option<&Principal>,
        agent: &AgentRef,
        request: OptimizationRequest,
    ) -> Result<Optimization> {
        let agent = self.agents.get_for(caller, agent).await?;
        let set = match self.evals.get_testset(&request.testset).await {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => {
                return Err(Error::invalid(
                    "testset_id",
                    format!("names no test set: '{}'", request.testset),
                ));
            }
            Err(e) => return Err(e),
        };
        if set.cases.is_empty() {
            return Err(Error::invalid(
                "testset_id",
                "the test set has no case to measure candidates on",
            ));
        }
        if let Some(m) = &request.optimizer_model {
            self.evals.check_judge(caller, "optimizer_model", m).await?;
        }
        let now = self.clock.now();
        let o = Optimization {
            id: OptimizationId::generate(),
            agent_id: agent.id.clone(),
            testset_id: set.id.clone(),
            status: TaskStatus::Pending,
            phase: None,
            request: OptimizationRequest {
                testset: set.id.to_string(),
                ..request
            },
            progress: Progress::default(),
            draft_version: None,
            error: None,
            created_by: caller.map(Principal::created_by),
            lease_owner: None,
            lease_expires_at: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
        };
        match self.store.insert_optimization(&o).await {
            Err(Error::Conflict { .. }) => Err(Error::conflict(
                "agent",
                format!(
                    "agent '{}' has an optimisation pending or running; wait for it or cancel it",
                    agent.key
                ),
            )),
            Err(e) => Err(e),
            Ok(()) => {
                self.events.publish(status_event(&o));
                Ok(o)
            }
        }
    }

    /// One optimisation the caller may see.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get(
        &self,
        caller: Option<&Principal>,
        id: &OptimizationId,
    ) -> Result<Optimization> {
        let o = self.store.get_optimization(id).await?;
        if !visible(caller, &o) {
            return Err(Error::not_found("optimization", id.to_string()));
        }
        Ok(o)
    }

    /// An agent's optimisations, newest first.
    ///
    /// # Errors
    /// `NotFound` (agent, also outside the caller's allowlist).
    pub async fn list(
        &self,
        caller: Option<&Principal>,
        agent: &AgentRef,
        page: Page,
    ) -> Result<Paged<Optimization>> {
        let agent = self.agents.get_for(caller, agent).await?;
        self.store.list_optimizations(&agent.id, page).await
    }

    /// An agent's `optimizationState` and `lastOptimized` (when its latest completed
    /// optimisation ended).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn state(
        &self,
        agent: &Agent,
    ) -> Result<(&'static str, Option<chrono::DateTime<chrono::Utc>>)> {
        let (latest, last) = self.store.optimization_state(&agent.id).await?;
        Ok((state_of(latest.as_ref()), last))
    }

    /// Cancels an optimisation and the evaluation run it is waiting for; one that ended is
    /// returned as it is.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn cancel(
        &self,
        caller: Option<&Principal>,
        id: &OptimizationId,
    ) -> Result<Optimization> {
        let before = self.get(caller, id).await?;
        if before.status.is_final() {
            return Ok(before);
        }
        let after = self.store.cancel_optimization(id, self.clock.now()).await?;
        self.cancel_runs(&after).await;
        Ok(after)
    }

    /// Cancels the evaluation runs `o` started (a run that ended stays as it is).
    async fn cancel_runs(&self, o: &Optimization) {
        for run in [&o.progress.testing_run, &o.progress.baseline_run]
            .into_iter()
            .flatten()
        {
            if let Err(e) = self.evals.cancel_run(None, run).await {
                tracing::warn!(optimization = %o.id, eval_run = %run, error = %e, "could not cancel an optimisation's evaluation run");
            }
        }
    }

    /// This process's runner, as one future that never ends. It starts dormant, as
    /// evaluation runners do.
    pub fn runner(&self, replica: String) -> impl Future<Output = ()> + Send + 'static {
        let service = self.clone();
        let name = format!("{replica}/optimizer");
        async move { service.run(name).await }
    }

    async fn run(self, name: String) {
        let first = FirstWork::new();
        let mut events = self.events.subscribe();
        loop {
            match self
                .store
                .claim_optimization(&name, self.lease, self.clock.now())
                .await
            {
                Ok(Some(o)) => {
                    first.seen();
                    let id = o.id.clone();
                    let runner = Step {
                        s: &self,
                        name: &name,
                    };
                    if let Err(e) = runner.execute(o).await {
                        tracing::info!(optimization = %id, reason = %e, "optimisation stopped here");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, runner = %name, "could not claim an optimisation")
                }
            }
            first
                .idle_wait(&mut events, self.poll, |ev| {
                    ev.kind() == "optimization.status"
                        && ev.payload.get("status").and_then(Value::as_str) == Some("pending")
                })
                .await;
        }
    }
}

/// Why a runner stopped working on an optimisation without ending it.
#[derive(Debug)]
enum Stop {
    /// It lost the optimisation (cancelled, or taken over).
    Lost,
    /// A storage failure: another runner goes on when the lease runs out.
    Storage(Error),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost => f.write_str("cancelled or taken over"),
            Self::Storage(e) => write!(f, "storage failure: {e}"),
        }
    }
}

struct Step<'a> {
    s: &'a OptimizationService,
    name: &'a str,
}

impl Step<'_> {
    /// Stores `o` and renews the lease; `Stop::Lost` when this runner no longer holds it.
    async fn save(&self, o: &mut Optimization) -> Result<(), Stop> {
        let now = self.s.clock.now();
        o.updated_at = now;
        match self
            .s
            .store
            .save_optimization(o, self.name, now + chrono_duration(self.s.lease))
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::Lost),
            Err(e) => Err(Stop::Storage(e)),
        }
    }

    /// Stores `o` and tells the bus (a phase changed).
    async fn announce(&self, o: &mut Optimization) -> Result<(), Stop> {
        self.save(o).await?;
        self.s.events.publish(status_event(o));
        Ok(())
    }

    /// Ends `o` (completed, or failed with `error`).
    async fn finish(&self, mut o: Optimization, error: Option<String>) -> Result<(), Stop> {
        o.status = if error.is_some() {
            TaskStatus::Failed
        } else {
            TaskStatus::Completed
        };
        o.error = error;
        o.phase = None;
        match self
            .s
            .store
            .finish_optimization(&o, self.name, self.s.clock.now())
            .await
        {
            Ok(true) => {
                self.s.events.publish(status_event(&o));
                Ok(())
            }
            Ok(false) => Err(Stop::Lost),
            Err(e) => Err(Stop::Storage(e)),
        }
    }

    async fn execute(&self, mut o: Optimization) -> Result<(), Stop> {
        match self.steps(&mut o).await {
            Ok(()) => self.finish(o, None).await,
            Err(Fail::Stop(Stop::Lost)) => {
                // Cancelled (or taken over): drop the evaluation run this runner started.
                if let Ok(now) = self.s.store.get_optimization(&o.id).await
                    && now.status == TaskStatus::Cancelled
                {
                    self.s.cancel_runs(&o).await;
                }
                Err(Stop::Lost)
            }
            Err(Fail::Stop(s)) => Err(s),
            Err(Fail::Failed(why)) => self.finish(o, Some(why)).await,
        }
    }

    async fn steps(&self, o: &mut Optimization) -> Result<(), Fail> {
        let agent_ref = AgentRef::Id(o.agent_id.clone());
        let agent = match self.s.agents.get(&agent_ref).await {
            Ok(a) => a,
            Err(Error::NotFound { .. }) => {
                return Err(Fail::Failed("the agent no longer exists".into()));
            }
            Err(e) => return Err(Fail::Stop(Stop::Storage(e))),
        };
        if o.progress.baseline_run.is_none() {
            o.phase = Some(Phase::Analyzing);
            o.progress.baseline = Some(agent.instructions.clone());
            o.progress.issues = match self
                .s
                .insights
                .insights(None, &agent_ref, Period::Days(30))
                .await
            {
                Ok(i) => i.top_issues.into_iter().map(|g| g.issue).collect(),
                Err(e) => {
                    tracing::warn!(optimization = %o.id, error = %e, "could not read the insights; going on without them");
                    Vec::new()
                }
            };
            let baseline = o.progress.baseline.clone().unwrap_or_default();
            let run = self
                .start_run(o, &agent, vec![("current".to_owned(), baseline)])
                .await?;
            o.progress.baseline_run = Some(run);
            self.announce(o).await?;
        }
        let baseline = o.progress.baseline.clone().unwrap_or_default();
        if o.progress.candidates.is_empty() {
            o.phase = Some(Phase::Analyzing);
            let Some(run_id) = o.progress.baseline_run.clone() else {
                return Err(Fail::Failed("lost the baseline run".into()));
            };
            let (run, results) = self.wait(o, &run_id).await?;
            let failures = failures(&run, &results);
            if failures.is_empty() && o.progress.issues.is_empty() {
                o.progress.evidence = Some(json!({
                    "improved": false,
                    "reason": "every case passes with the current instructions and the insights report no issue: nothing to improve",
                    "scores": [score_json(&run, &results, 0)],
                }));
                return Ok(());
            }
            o.phase = Some(Phase::Optimizing);
            self.announce(o).await?;
            let candidates = self.write(o, &baseline, &failures).await;
            if candidates.is_empty() {
                return Err(Fail::Failed(
                    "no candidate could be written (no failing assertion gives a guideline, no case has an expected answer, and no issue was reported)".into(),
                ));
            }
            o.progress.candidates = candidates;
            self.save(o).await?;
        }
        if o.progress.testing_run.is_none() {
            o.phase = Some(Phase::Testing);
            let mut configs = vec![("current".to_owned(), baseline.clone())];
            configs.extend(
                o.progress
                    .candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("candidate {}", i + 1), c.instructions.clone())),
            );
            let run = self.start_run(o, &agent, configs).await?;
            o.progress.testing_run = Some(run);
            self.announce(o).await?;
        }
        o.phase = Some(Phase::Testing);
        let Some(run_id) = o.progress.testing_run.clone() else {
            return Err(Fail::Failed("lost the testing run".into()));
        };
        let (run, results) = self.wait(o, &run_id).await?;
        let scores: Vec<Score> = crate::eval::summarise(&run.configurations, &results)
            .into_iter()
            .map(|s| Score {
                label: s.label,
                passed: s.passed,
                results: s.results,
                pass_rate: s.pass_rate,
            })
            .collect();
        let per_case: Vec<(String, Vec<bool>)> = run
            .cases
            .iter()
            .map(|c| {
                let passes = (0..run.configurations.len())
                    .map(|i| {
                        let mine: Vec<&EvalResult> = results
                            .iter()
                            .filter(|r| r.case_id == c.id && r.configuration as usize == i)
                            .collect();
                        !mine.is_empty() && mine.iter().all(|r| r.passed)
                    })
                    .collect();
                (c.id.to_string(), passes)
            })
            .collect();
        let (winner, mut ev) = evidence(&scores, &per_case, &o.progress.candidates);
        if let Some(w) = winner
            && let Some(c) = o.progress.candidates.get(w)
        {
            // The live definition (as it is now) with the winner's instructions.
            let latest = match self.s.agents.get(&agent_ref).await {
                Ok(a) => a,
                Err(e) => return Err(Fail::Stop(Stop::Storage(e))),
            };
            let snapshot = Agent {
                instructions: c.instructions.clone(),
                ..latest
            };
            let note = format!(
                "Draft from optimisation {}: candidate {} passed {:.1}% of test set '{}' against {:.1}% for the current instructions",
                o.id,
                w + 1,
                scores.get(w + 1).map_or(0.0, |s| s.pass_rate * 100.0),
                run.testset_name,
                scores.first().map_or(0.0, |s| s.pass_rate * 100.0),
            );
            let draft = self
                .s
                .versions
                .save_draft(&snapshot, note, o.created_by.clone())
                .await
                .map_err(|e| Fail::Stop(Stop::Storage(e)))?;
            o.draft_version = Some(draft.version);
            if let Value::Object(m) = &mut ev {
                m.insert("draft_version".into(), json!(draft.version));
            }
        }
        o.progress.evidence = Some(ev);
        Ok(())
    }

    /// Starts an evaluation run of the agent under each `(label, instructions)`.
    async fn start_run(
        &self,
        o: &Optimization,
        agent: &Agent,
        configs: Vec<(String, String)>,
    ) -> Result<EvalRunId, Fail> {
        let new = NewEvalRun {
            configurations: configs
                .into_iter()
                .map(|(label, instructions)| Configuration {
                    label,
                    subject: Subject::Agent {
                        agent: agent.key.to_string(),
                        version: None,
                        instructions: Some(instructions),
                    },
                })
                .collect(),
            concurrency: o.request.concurrency,
            repeats: 1,
            judge: None,
        };
        match self
            .s
            .evals
            .start_run(None, o.testset_id.as_str(), new)
            .await
        {
            Ok(run) => Ok(run.id),
            Err(e @ (Error::Invalid(_) | Error::NotFound { .. })) => Err(Fail::Failed(format!(
                "could not start an evaluation run: {e}"
            ))),
            Err(e) => Err(Fail::Stop(Stop::Storage(e))),
        }
    }

    /// Waits for an evaluation run to end, renewing the lease; its results when it completed.
    async fn wait(
        &self,
        o: &mut Optimization,
        run: &EvalRunId,
    ) -> Result<(EvalRun, Vec<EvalResult>), Fail> {
        loop {
            let now = self
                .s
                .evals
                .get_run(None, run)
                .await
                .map_err(|e| Fail::Stop(Stop::Storage(e)))?;
            match now.status {
                TaskStatus::Completed => {
                    let (run, results) = self
                        .s
                        .evals
                        .results(None, run)
                        .await
                        .map_err(|e| Fail::Stop(Stop::Storage(e)))?;
                    return Ok((run, results));
                }
                TaskStatus::Failed | TaskStatus::Cancelled => {
                    return Err(Fail::Failed(format!(
                        "evaluation run {run} ended {}{}",
                        now.status.as_str(),
                        now.error.map(|e| format!(": {e}")).unwrap_or_default()
                    )));
                }
                TaskStatus::Pending | TaskStatus::Running => {}
            }
            self.save(o).await?;
            tokio::time::sleep(self.s.poll.min(self.s.lease / 3)).await;
        }
    }

    /// The candidates: the model writer's (the built-in writer fills in when it fails).
    async fn write(
        &self,
        o: &Optimization,
        baseline: &str,
        failures: &[Failure],
    ) -> Vec<Candidate> {
        let count = o.request.candidates;
        let issues = &o.progress.issues;
        let Some(writer) = o.request.optimizer_model.clone() else {
            return builtin_candidates(baseline, failures, issues, count);
        };
        let mut log_meta = Map::new();
        log_meta.insert("optimization_id".into(), json!(o.id.as_str()));
        let request = TurnRequest {
            instructions: Some(OPTIMIZER_INSTRUCTIONS.to_owned()),
            params: Params {
                temperature: Some(0.7),
                ..Params::default()
            },
            ..TurnRequest::new(
                vec![PromptMessage::new(
                    Role::User,
                    optimizer_prompt(baseline, failures, issues, count),
                )],
                Memory::Run {
                    run_id: None,
                    log_meta,
                    log_now: false,
                },
            )
        };
        let target = TurnTarget::AgentOrModel {
            name: writer.clone(),
            version: None,
        };
        let asked = tokio::time::timeout(WRITER_TIMEOUT, async {
            match self.s.runtime.start_turn(None, target, request).await {
                Ok(turn) => turn.finish().await,
                Err(e) => Err(e),
            }
        })
        .await;
        let why = match asked {
            Ok(Ok(outcome)) => match read_candidates(&outcome.text, count, &writer) {
                Ok(c) => return c,
                Err(why) => why,
            },
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", WRITER_TIMEOUT.as_secs()),
        };
        tracing::warn!(optimization = %o.id, writer = %writer, reason = %why, "the optimizer model gave no candidate; the built-in writer fills in");
        builtin_candidates(baseline, failures, issues, count)
            .into_iter()
            .map(|c| Candidate {
                rationale: format!(
                    "{} (the optimizer model '{writer}' failed: {why})",
                    c.rationale
                ),
                ..c
            })
            .collect()
    }
}

/// How a step ended early.
enum Fail {
    /// The optimisation fails with this reason.
    Failed(String),
    /// The runner stops without ending it.
    Stop(Stop),
}

impl From<Stop> for Fail {
    fn from(s: Stop) -> Self {
        Self::Stop(s)
    }
}

/// The failing cases of a run of one configuration.
fn failures(run: &EvalRun, results: &[EvalResult]) -> Vec<Failure> {
    results
        .iter()
        .filter(|r| !r.passed)
        .filter_map(|r| {
            let case = run.cases.iter().find(|c| c.id == r.case_id)?.clone();
            let mut reasons: Vec<String> = r
                .verdicts
                .iter()
                .filter(|v| !v.passed)
                .map(|v| format!("{}: {}", v.kind, v.reason))
                .collect();
            if let Some(e) = &r.error {
                reasons.push(format!("the turn failed: {e}"));
            }
            Some(Failure {
                case,
                output: r.output.clone(),
                reasons,
            })
        })
        .collect()
}

fn score_json(run: &EvalRun, results: &[EvalResult], i: usize) -> Value {
    crate::eval::summarise(&run.configurations, results)
        .get(i)
        .map_or(Value::Null, |s| {
            json!({"label": s.label, "passed": s.passed, "results": s.results, "pass_rate": s.pass_rate})
        })
}
