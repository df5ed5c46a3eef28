//! Test sets and evaluation runs: the API's use cases, and the runner that executes runs.
//!
//! A run is durable work like a task: it is stored `pending` with its configurations and a
//! snapshot of the cases; a runner on any replica claims it (a lease renewed while it runs)
//! and stores each result as it comes, so progress is readable at once and a runner that dies
//! leaves a run another one takes over when the lease runs out, going on with the results
//! still missing. Every case runs through [`Runtime::start_turn`], the same turn production
//! traffic takes (access rules, tools, retrieval, guardrails), as a logged run tagged with
//! `eval_run_id`, counted by a metrics registry of its own (not the production counters).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde_json::{Map, Value, json};

use crate::agent::{AgentRef, ModelSpec};
use crate::auth::{Principal, Requirement};
use crate::error::{Error, Result};
use crate::eval::{
    Answer, Assertion, Configuration, EvalResult, EvalRun, EvalRunFilter, EvalRunId, EvalStatus,
    NewEvalRun, RESULTS_MAX, Subject, TestCase, TestSet, TestSetId, TestSetSummary, Verdict,
};
use crate::event::{Event, EventBus};
use crate::llm::{PromptMessage, Role};
use crate::page::{Page, Paged};
use crate::ports::{Clock, EvalStore};
use crate::services::dormant::FirstWork;
use crate::services::{
    AgentService, Memory, Params, ProviderRegistry, Runtime, TurnRequest, TurnTarget,
    VersionService, may_call_models_directly,
};

/// How runs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalSettings {
    /// Runs this process executes at once (0: none here; other replicas may).
    pub runners: usize,
    /// A runner's lease on a run; renewed every third of it.
    pub lease: Duration,
    /// How often an idle runner looks for a run (a new run also wakes it at once). Until the
    /// process has seen a run, runner 0 looks every
    /// [`DORMANT_POLLS`](crate::services::DORMANT_POLLS) polls and the others wait for it.
    pub poll: Duration,
    /// Tries of a case whose turn was refused for a rate limit or an unavailable provider.
    pub retries: u32,
    /// Longest wait for a judge's answer.
    pub judge_timeout: Duration,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            runners: 1,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            retries: 3,
            judge_timeout: Duration::from_secs(60),
        }
    }
}

/// A test set's new fields (`None`: unchanged on a patch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestSetFields {
    /// The name.
    pub name: Option<String>,
    /// The description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// The cases (replaced whole).
    pub cases: Option<Vec<TestCase>>,
}

/// The test sets and evaluation runs use cases. Cheap to clone.
#[derive(Clone)]
pub struct EvalService {
    store: Arc<dyn EvalStore>,
    agents: AgentService,
    versions: VersionService,
    providers: ProviderRegistry,
    runtime: Runtime,
    events: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    settings: EvalSettings,
}

/// The channel a run's status is published on.
fn run_channel(id: &EvalRunId) -> String {
    format!("eval_run.{id}")
}

fn status_event(run: &EvalRun, done: u64) -> Event {
    let mut payload = Map::new();
    payload.insert("type".into(), json!("eval_run.status"));
    payload.insert("eval_run_id".into(), json!(run.id.as_str()));
    payload.insert("status".into(), json!(run.status.as_str()));
    payload.insert("done".into(), json!(done));
    payload.insert("total".into(), json!(run.total));
    Event {
        channels: vec![run_channel(&run.id), "eval_runs".to_owned()],
        agent_key: None,
        payload,
    }
}

/// Whether `caller` may see `run`: callers limited to some agents see the runs they started.
fn visible(caller: Option<&Principal>, run: &EvalRun) -> bool {
    caller.is_none_or(|p| {
        p.agents.is_none() || run.created_by.as_deref() == Some(p.created_by().as_str())
    })
}

impl EvalService {
    /// A service over `store`; turns run on `runtime` (its metrics are replaced by a registry
    /// of the evaluations' own).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn EvalStore>,
        agents: AgentService,
        versions: VersionService,
        providers: ProviderRegistry,
        runtime: Runtime,
        events: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        settings: EvalSettings,
    ) -> Self {
        let runtime = runtime.counting_in(crate::metrics::Metrics::new());
        Self {
            store,
            agents,
            versions,
            providers,
            runtime,
            events,
            clock,
            settings,
        }
    }

    // ----- test sets -----

    /// Creates a test set.
    ///
    /// # Errors
    /// `Invalid` (name, description), `Conflict` (name taken).
    pub async fn create_testset(
        &self,
        name: &str,
        description: Option<String>,
        cases: Vec<TestCase>,
    ) -> Result<TestSet> {
        crate::eval::check_name(name)?;
        if let Some(d) = &description {
            crate::eval::check_description(d)?;
        }
        crate::eval::check_unique("cases", &cases)?;
        let now = self.clock.now();
        let set = TestSet {
            id: TestSetId::generate(),
            name: name.trim().to_owned(),
            description,
            cases,
            revision: 1,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_testset(&set).await?;
        Ok(set)
    }

    /// A test set by id, or by name.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_testset(&self, id_or_name: &str) -> Result<TestSet> {
        match TestSetId::parse(id_or_name) {
            Ok(id) => self.store.get_testset(&id).await,
            Err(_) => self.store.get_testset_by_name(id_or_name).await,
        }
    }

    /// Test sets, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_testsets(&self, page: Page) -> Result<Paged<TestSetSummary>> {
        self.store.list_testsets(page).await
    }

    /// Changes a test set with `change` (read, changed, written if nobody wrote in between;
    /// tried again otherwise).
    async fn change(
        &self,
        id_or_name: &str,
        change: impl Fn(&mut TestSet) -> Result<()>,
    ) -> Result<TestSet> {
        for _ in 0..5 {
            let mut set = self.get_testset(id_or_name).await?;
            let revision = set.revision;
            change(&mut set)?;
            crate::eval::check_unique("cases", &set.cases)?;
            if set.cases.len() > crate::eval::CASES_MAX {
                return Err(Error::invalid(
                    "cases",
                    format!("a test set holds at most {} cases", crate::eval::CASES_MAX),
                ));
            }
            set.revision = revision + 1;
            set.updated_at = self.clock.now();
            if self.store.update_testset(&set, revision).await? {
                return Ok(set);
            }
        }
        Err(Error::conflict(
            "testset",
            "the test set kept changing while this change was made; try again",
        ))
    }

    /// Updates a test set's fields.
    ///
    /// # Errors
    /// `NotFound`, `Invalid`, `Conflict` (name taken).
    pub async fn update_testset(&self, id_or_name: &str, fields: TestSetFields) -> Result<TestSet> {
        if let Some(n) = &fields.name {
            crate::eval::check_name(n)?;
        }
        if let Some(Some(d)) = &fields.description {
            crate::eval::check_description(d)?;
        }
        self.change(id_or_name, |set| {
            if let Some(n) = &fields.name {
                set.name = n.trim().to_owned();
            }
            if let Some(d) = &fields.description {
                set.description = d.clone();
            }
            if let Some(c) = &fields.cases {
                set.cases = c.clone();
            }
            Ok(())
        })
        .await
    }

    /// Deletes a test set (idempotent: `false` when there was none). Its runs stay.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn delete_testset(&self, id_or_name: &str) -> Result<bool> {
        match self.get_testset(id_or_name).await {
            Ok(set) => self.store.delete_testset(&set.id).await,
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds cases at the end.
    ///
    /// # Errors
    /// `NotFound`, `Invalid` (an id already used).
    pub async fn add_cases(&self, id_or_name: &str, cases: Vec<TestCase>) -> Result<TestSet> {
        self.change(id_or_name, |set| {
            set.cases.extend(cases.iter().cloned());
            Ok(())
        })
        .await
    }

    /// Replaces one case (its id is kept).
    ///
    /// # Errors
    /// `NotFound` (test set or case).
    pub async fn replace_case(&self, id_or_name: &str, case: TestCase) -> Result<TestSet> {
        self.change(id_or_name, |set| {
            let slot = set
                .cases
                .iter_mut()
                .find(|c| c.id == case.id)
                .ok_or_else(|| Error::not_found("case", case.id.to_string()))?;
            *slot = case.clone();
            Ok(())
        })
        .await
    }

    /// Removes one case; `false` when the test set has no such case.
    ///
    /// # Errors
    /// `NotFound` (test set).
    pub async fn remove_case(&self, id_or_name: &str, case_id: &str) -> Result<bool> {
        let set = self.get_testset(id_or_name).await?;
        if !set.cases.iter().any(|c| c.id.as_str() == case_id) {
            return Ok(false);
        }
        let before = set.cases.len();
        let after = self
            .change(set.id.as_str(), |set| {
                set.cases.retain(|c| c.id.as_str() != case_id);
                Ok(())
            })
            .await?;
        Ok(after.cases.len() < before)
    }

    // ----- runs -----

    /// Checks that `caller` may run `config` and that what it names exists.
    async fn check_configuration(
        &self,
        caller: Option<&Principal>,
        field: &str,
        config: &mut Configuration,
    ) -> Result<()> {
        match &mut config.subject {
            Subject::Agent {
                agent,
                version,
                instructions,
            } => {
                if instructions.is_some() && !may_call_models_directly(caller) {
                    return Err(Error::forbidden(
                        "a configuration that replaces an agent's instructions calls its model with a prompt of the caller's: an editor, an admin or a key with `write` scope and no agent allowlist may",
                    ));
                }
                let r = AgentRef::parse(agent)
                    .map_err(|e| Error::from(e.renamed(format!("{field}.agent"))))?;
                let found = match self.agents.get(&r).await {
                    Ok(a) => a,
                    Err(Error::NotFound { .. }) => {
                        return Err(Error::invalid(
                            format!("{field}.agent"),
                            format!("names no agent: '{agent}'"),
                        ));
                    }
                    Err(e) => return Err(e),
                };
                if caller.is_some_and(|p| !p.may_invoke_agent(found.key.as_str())) {
                    return Err(Error::invalid(
                        format!("{field}.agent"),
                        format!("names no agent: '{agent}'"),
                    ));
                }
                if let Some(v) = version
                    && let Err(Error::NotFound { .. }) = self.versions.get(&r, *v).await
                {
                    return Err(Error::invalid(
                        format!("{field}.version"),
                        format!("agent '{agent}' has no version {v}"),
                    ));
                }
                // Turns name the agent by key (an id given here is read as the key it has now).
                *agent = found.key.to_string();
                Ok(())
            }
            Subject::Inline { model, .. } => {
                if !may_call_models_directly(caller) {
                    return Err(Error::forbidden(
                        "inline configurations call models directly: an editor, an admin or a key with `write` scope and no agent allowlist may",
                    ));
                }
                self.check_model(&format!("{field}.model"), model).await
            }
        }
    }

    async fn check_model(&self, field: &str, model: &str) -> Result<()> {
        let spec = ModelSpec {
            provider_id: None,
            model: model.to_owned(),
            field: field.to_owned(),
        };
        match self.providers.resolve(&spec).await {
            Ok(_) => Ok(()),
            Err(Error::ModelNotFound { .. }) => Err(Error::invalid(
                field,
                format!("names no model a provider serves: '{model}'"),
            )),
            Err(e) => Err(e),
        }
    }

    /// Checks a judge (or another helper model, such as an optimizer): an agent key the
    /// caller may call, or a model.
    pub(crate) async fn check_judge(
        &self,
        caller: Option<&Principal>,
        field: &str,
        judge: &str,
    ) -> Result<()> {
        if let Ok(r) = AgentRef::parse(judge)
            && let Ok(agent) = self.agents.get(&r).await
        {
            if caller.is_some_and(|p| !p.may_invoke_agent(agent.key.as_str())) {
                return Err(Error::invalid(field, format!("names no agent: '{judge}'")));
            }
            return Ok(());
        }
        if !may_call_models_directly(caller) {
            return Err(Error::invalid(field, format!("names no agent: '{judge}'")));
        }
        self.check_model(field, judge).await
    }

    /// Starts a run of a test set (`pending`; a runner takes it).
    ///
    /// # Errors
    /// `NotFound` (test set), `Invalid` (a configuration, a judge, too many results, a test
    /// set with no case), `Forbidden` (inline configurations for a caller that may not call
    /// models directly).
    #[tracing::instrument(skip_all)]
    pub async fn start_run(
        &self,
        caller: Option<&Principal>,
        testset: &str,
        mut new: NewEvalRun,
    ) -> Result<EvalRun> {
        let set = self.get_testset(testset).await?;
        if set.cases.is_empty() {
            return Err(Error::invalid("testset", "the test set has no case to run"));
        }
        for (i, c) in new.configurations.iter_mut().enumerate() {
            self.check_configuration(caller, &format!("configurations[{i}]"), c)
                .await?;
        }
        if let Some(j) = &new.judge {
            self.check_judge(caller, "judge", j).await?;
        }
        let mut judges = HashSet::new();
        for (i, case) in set.cases.iter().enumerate() {
            for judge in case.judges() {
                match judge.or(new.judge.as_deref()) {
                    None => {
                        return Err(Error::invalid(
                            "judge",
                            format!(
                                "case {} ({}) has a `judge` assertion that names no judge: give the run a `judge` (an agent key or provider/model) or the assertion one",
                                i, case.id
                            ),
                        ));
                    }
                    Some(j) if judges.insert(j.to_owned()) => {
                        self.check_judge(
                            caller,
                            &format!("testset.cases[{i}].assertions.judge"),
                            j,
                        )
                        .await?;
                    }
                    Some(_) => {}
                }
            }
        }
        let total = set.cases.len() * new.configurations.len() * new.repeats as usize;
        if total > RESULTS_MAX {
            return Err(Error::invalid(
                "configurations",
                format!(
                    "{} cases × {} configurations × {} repeats is {total} results; a run holds at most {RESULTS_MAX}",
                    set.cases.len(),
                    new.configurations.len(),
                    new.repeats
                ),
            ));
        }
        let now = self.clock.now();
        let run = EvalRun {
            id: EvalRunId::generate(),
            testset_id: set.id.clone(),
            testset_name: set.name.clone(),
            status: EvalStatus::Pending,
            configurations: new.configurations,
            cases: set.cases,
            concurrency: new.concurrency,
            repeats: new.repeats,
            judge: new.judge,
            total: total as u64,
            done: 0,
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
        self.store.insert_eval_run(&run).await?;
        self.events.publish(status_event(&run, 0));
        Ok(run)
    }

    /// One run the caller may see.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_run(&self, caller: Option<&Principal>, id: &EvalRunId) -> Result<EvalRun> {
        let run = self.store.get_eval_run(id).await?;
        if !visible(caller, &run) {
            return Err(Error::not_found("eval_run", id.to_string()));
        }
        Ok(run)
    }

    /// A run's results.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn results(
        &self,
        caller: Option<&Principal>,
        id: &EvalRunId,
    ) -> Result<(EvalRun, Vec<EvalResult>)> {
        let run = self.get_run(caller, id).await?;
        let results = self.store.eval_results(id).await?;
        Ok((run, results))
    }

    /// Runs the caller may see, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_runs(
        &self,
        caller: Option<&Principal>,
        mut filter: EvalRunFilter,
        page: Page,
    ) -> Result<Paged<EvalRun>> {
        if let Some(p) = caller.filter(|p| p.agents.is_some() || !p.satisfies(Requirement::Read)) {
            filter.created_by = Some(p.created_by());
        }
        self.store.list_eval_runs(&filter, page).await
    }

    /// Cancels a run: pending at once; a running one's runner drops its turns. A run that
    /// already ended is returned as it is.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn cancel_run(&self, caller: Option<&Principal>, id: &EvalRunId) -> Result<EvalRun> {
        let before = self.get_run(caller, id).await?;
        if before.status.is_final() {
            return Ok(before);
        }
        let after = self.store.cancel_eval_run(id, self.clock.now()).await?;
        if after.status == EvalStatus::Cancelled {
            self.events.publish(status_event(&after, after.done));
        }
        Ok(after)
    }

    // ----- runners -----

    /// This process's runners, as one future that never ends (nothing when `runners` is 0).
    /// They start dormant, as task workers do ([`TaskService::workers`]).
    ///
    /// [`TaskService::workers`]: crate::services::TaskService::workers
    pub fn runners(&self, replica: String) -> impl Future<Output = ()> + Send + 'static {
        let first = FirstWork::new();
        let runners: Vec<_> = (0..self.settings.runners)
            .map(|n| {
                Runner {
                    evals: self.clone(),
                    name: format!("{replica}/eval-{n}"),
                    first: first.clone(),
                    lead: n == 0,
                }
                .run()
                .boxed()
            })
            .collect();
        async move {
            futures_util::future::join_all(runners).await;
        }
    }
}

struct Runner {
    evals: EvalService,
    name: String,
    /// Whether this process has seen a run yet.
    first: FirstWork,
    /// The runner that looks for runs while the others wait for the first.
    lead: bool,
}

/// One result to produce: configuration, case and repeat (positions).
type Item = (usize, usize, u32);

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Runner {
    async fn run(self) {
        let e = &self.evals;
        if !self.lead {
            self.first.wait().await;
        }
        let mut events = e.events.subscribe();
        loop {
            match e
                .store
                .claim_eval_run(&self.name, e.settings.lease, e.clock.now())
                .await
            {
                Ok(Some(run)) => {
                    self.first.seen();
                    e.events.publish(status_event(&run, run.done));
                    self.execute(run).await;
                    continue;
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, runner = %self.name, "could not claim an evaluation run")
                }
            }
            self.first
                .idle_wait(&mut events, e.settings.poll, |ev| {
                    ev.kind() == "eval_run.status"
                        && ev.payload.get("status").and_then(Value::as_str) == Some("pending")
                })
                .await;
        }
    }

    /// Runs what is missing of `run` while renewing the lease; stops when it is cancelled or
    /// the lease is lost.
    async fn execute(&self, run: EvalRun) {
        let e = &self.evals;
        let id = run.id.clone();
        let done: HashSet<(u32, String, u32)> = match e.store.eval_results(&id).await {
            Ok(results) => results
                .into_iter()
                .map(|r| (r.configuration, r.case_id.to_string(), r.repeat))
                .collect(),
            Err(err) => {
                tracing::warn!(eval_run = %id, error = %err, "could not read a run's results; it is taken again when its lease expires");
                return;
            }
        };
        let mut items: Vec<Item> = Vec::new();
        for (case_i, case) in run.cases.iter().enumerate() {
            for (config_i, _) in run.configurations.iter().enumerate() {
                for repeat in 0..run.repeats {
                    let key = (
                        u32::try_from(config_i).unwrap_or(u32::MAX),
                        case.id.to_string(),
                        repeat,
                    );
                    if !done.contains(&key) {
                        items.push((config_i, case_i, repeat));
                    }
                }
            }
        }
        let run = Arc::new(run);
        let mut stored = done.len() as u64;
        let work = {
            let run = run.clone();
            async move {
                let mut results = futures_util::stream::iter(items)
                    .map(|item| self.item(&run, item))
                    .buffer_unordered(run.concurrency.max(1) as usize);
                while let Some(result) = results.next().await {
                    if let Err(err) = e.store.insert_eval_result(&result).await {
                        tracing::warn!(eval_run = %run.id, error = %err, "could not store a result; it is run again when the run is taken over");
                        return Err(());
                    }
                    stored += 1;
                    let mut event = status_event(&run, stored);
                    event.payload.insert("status".into(), json!("running"));
                    e.events.publish(event);
                }
                Ok(())
            }
        };
        let mut events = e.events.subscribe();
        let cancelled = {
            let channel = run_channel(&id);
            async move {
                loop {
                    match events.recv().await {
                        Ok(ev)
                            if ev.channels.contains(&channel)
                                && ev.payload.get("status").and_then(Value::as_str)
                                    == Some("cancelled") =>
                        {
                            return;
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            futures_util::future::pending::<()>().await;
                        }
                    }
                }
            }
        };
        let renewals = async {
            loop {
                tokio::time::sleep(e.settings.lease / 3).await;
                let until = e.clock.now() + chrono_duration(e.settings.lease);
                match e.store.renew_eval_lease(&id, &self.name, until).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(err) => {
                        tracing::warn!(eval_run = %id, error = %err, "could not renew a run's lease")
                    }
                }
            }
        };
        let finished = tokio::select! {
            r = work => r,
            () = cancelled => {
                tracing::info!(eval_run = %id, "evaluation run cancelled: its turns are dropped");
                return;
            }
            () = renewals => {
                tracing::info!(eval_run = %id, "evaluation run lost its lease (cancelled or taken over): its turns are dropped");
                return;
            }
        };
        if finished.is_err() {
            return;
        }
        match e
            .store
            .finish_eval_run(&id, &self.name, None, e.clock.now())
            .await
        {
            Ok(true) => {
                if let Ok(after) = e.store.get_eval_run(&id).await {
                    e.events.publish(status_event(&after, after.done));
                }
            }
            Ok(false) => {
                tracing::info!(eval_run = %id, "evaluation run changed hands before it finished")
            }
            Err(err) => {
                tracing::warn!(eval_run = %id, error = %err, "could not mark a run completed; it is taken again when its lease expires")
            }
        }
    }

    /// One case under one configuration.
    async fn item(&self, run: &EvalRun, (config_i, case_i, repeat): Item) -> EvalResult {
        let e = &self.evals;
        let config = &run.configurations[config_i];
        let case = &run.cases[case_i];
        let mut log_meta = Map::new();
        log_meta.insert("eval_run_id".into(), json!(run.id.as_str()));
        log_meta.insert("case_id".into(), json!(case.id.as_str()));
        log_meta.insert("configuration".into(), json!(config.label));
        let mut result = EvalResult {
            run_id: run.id.clone(),
            configuration: u32::try_from(config_i).unwrap_or(u32::MAX),
            case_id: case.id.clone(),
            repeat,
            passed: false,
            output: String::new(),
            verdicts: Vec::new(),
            error: None,
            latency_ms: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            model: None,
            tool_calls: Vec::new(),
            created_at: e.clock.now(),
        };
        let (target, request) = turn_for(config, case.messages(), log_meta);
        let outcome = match self.turn_with_retries(target, request).await {
            Ok(o) => o,
            Err(err) => {
                result.error = Some(err.to_string());
                result.created_at = e.clock.now();
                return result;
            }
        };
        let mut calls: Vec<(String, String)> = outcome
            .steps
            .iter()
            .flat_map(|m| m.tool_calls.iter())
            .chain(outcome.tool_calls.iter())
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect();
        calls.dedup();
        let answer = Answer {
            text: outcome.text.clone(),
            tool_calls: calls,
            latency_ms: outcome.latency_ms,
            completion_tokens: outcome.usage.map(|u| u64::from(u.completion_tokens)),
        };
        let mut verdicts = Vec::with_capacity(case.assertions.len());
        for assertion in &case.assertions {
            let verdict = match crate::eval::check(assertion, &answer) {
                Some(v) => v,
                None => self.judge(run, case, assertion, &answer.text).await,
            };
            verdicts.push(verdict);
        }
        result.passed = verdicts.iter().all(|v| v.passed);
        result.verdicts = verdicts;
        result.output = outcome.text;
        result.latency_ms = outcome.latency_ms;
        result.prompt_tokens = outcome.usage.map_or(0, |u| u64::from(u.prompt_tokens));
        result.completion_tokens = answer.completion_tokens.unwrap_or(0);
        result.model = Some(outcome.model.to_string());
        result.tool_calls = answer
            .tool_calls
            .iter()
            .map(|(name, args)| json!({"name": name, "arguments": args}))
            .collect();
        result.created_at = e.clock.now();
        result
    }

    /// A turn, tried again (with a pause) when refused for a rate limit, a busy agent or an
    /// unavailable provider.
    async fn turn_with_retries(
        &self,
        target: TurnTarget,
        request: TurnRequest,
    ) -> Result<crate::services::TurnOutcome> {
        let e = &self.evals;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match e
                .runtime
                .start_turn(None, target.clone(), request.clone())
                .await
            {
                Ok(turn) => turn.finish().await,
                Err(err) => Err(err),
            };
            let wait = match &outcome {
                Err(Error::RateLimited { retry_after, .. } | Error::Busy { retry_after, .. }) => {
                    *retry_after
                }
                Err(Error::Unavailable(_)) => Duration::from_secs(1),
                Err(Error::Provider { error, .. }) if error.is_retryable() => {
                    Duration::from_secs(1)
                }
                _ => return outcome,
            };
            if attempt >= e.settings.retries.max(1) {
                return outcome;
            }
            tokio::time::sleep(wait.min(Duration::from_secs(30)) * attempt).await;
        }
    }

    /// Asks the judge of `assertion` for a score.
    async fn judge(
        &self,
        run: &EvalRun,
        case: &TestCase,
        assertion: &Assertion,
        answer: &str,
    ) -> Verdict {
        let Assertion::Judge {
            rubric,
            threshold,
            judge,
        } = assertion
        else {
            return Verdict {
                kind: assertion.kind(),
                passed: false,
                reason: "not a judge assertion".into(),
                score: None,
            };
        };
        let failed = |reason: String| Verdict {
            kind: "judge",
            passed: false,
            reason,
            score: None,
        };
        let Some(name) = judge.clone().or_else(|| run.judge.clone()) else {
            return failed("no judge named".into());
        };
        let mut log_meta = Map::new();
        log_meta.insert("eval_run_id".into(), json!(run.id.as_str()));
        log_meta.insert("case_id".into(), json!(case.id.as_str()));
        log_meta.insert("judge".into(), json!(true));
        let request = TurnRequest {
            instructions: Some(crate::eval::JUDGE_INSTRUCTIONS.to_owned()),
            params: Params {
                temperature: Some(0.0),
                ..Params::default()
            },
            ..TurnRequest::new(
                vec![PromptMessage::new(
                    Role::User,
                    crate::eval::judge_prompt(rubric, case, answer),
                )],
                Memory::Run {
                    run_id: None,
                    log_meta,
                    log_now: false,
                },
            )
        };
        let target = TurnTarget::AgentOrModel {
            name: name.clone(),
            version: None,
        };
        let asked = tokio::time::timeout(
            self.evals.settings.judge_timeout,
            self.turn_with_retries(target, request),
        )
        .await;
        match asked {
            Err(_) => failed(format!(
                "the judge '{name}' did not answer within {} s",
                self.evals.settings.judge_timeout.as_secs()
            )),
            Ok(Err(err)) => failed(format!("the judge '{name}' failed: {err}")),
            Ok(Ok(outcome)) => match crate::eval::read_judgement(&outcome.text) {
                Ok((score, reason)) => Verdict {
                    kind: "judge",
                    passed: score >= *threshold,
                    reason: format!("score {score} (pass mark {threshold}): {reason}"),
                    score: Some(score),
                },
                Err(why) => failed(why),
            },
        }
    }
}

/// The turn that answers `messages` under `config`: an agent's (live, or a pinned version),
/// or a model's with the inline instructions and parameters.
fn turn_for(
    config: &Configuration,
    messages: Vec<PromptMessage>,
    log_meta: Map<String, Value>,
) -> (TurnTarget, TurnRequest) {
    let memory = Memory::Run {
        run_id: None,
        log_meta,
        log_now: false,
    };
    match &config.subject {
        Subject::Agent {
            agent,
            version,
            instructions,
        } => {
            let target = match version {
                None => match AgentRef::parse(agent) {
                    Ok(r) => TurnTarget::LiveAgent(r),
                    Err(_) => TurnTarget::ServedAgent {
                        key: agent.clone(),
                        version: None,
                    },
                },
                Some(v) => TurnTarget::ServedAgent {
                    key: agent.clone(),
                    version: Some(*v),
                },
            };
            let request = TurnRequest {
                agent_instructions: instructions.clone(),
                ..TurnRequest::new(messages, memory)
            };
            (target, request)
        }
        Subject::Inline {
            model,
            instructions,
            temperature,
            top_p,
            max_tokens,
        } => {
            let target = TurnTarget::Model(ModelSpec {
                provider_id: None,
                model: model.clone(),
                field: "model".to_owned(),
            });
            let request = TurnRequest {
                instructions: instructions.clone(),
                params: Params {
                    temperature: *temperature,
                    top_p: *top_p,
                    max_tokens: *max_tokens,
                },
                ..TurnRequest::new(messages, memory)
            };
            (target, request)
        }
    }
}
