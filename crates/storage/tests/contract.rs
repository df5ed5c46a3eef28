//! The storage contract: every test is written once against the ports and runs on SQLite
//! (a fresh file) and on PostgreSQL (a fresh schema; skipped when the server is not
//! reachable, unless `AGENTRY_TEST_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agentry_domain::Error;
use agentry_domain::agent::{
    Agent, AgentFilter, AgentId, AgentKey, AgentName, AgentRef, AgentStatus, AgentType,
    ClusterName, MaxTokens, ModelRef, Tag, Temperature, ToolSpec, TopP,
};
use agentry_domain::auth::{
    ApiKey, ApiKeyId, Email, RefreshTokenRecord, Role as UserRole, Scope, Session, User, UserId,
    Username,
};
use agentry_domain::conversation::{
    Annotations, Conversation, Message, MessageQuery, MessageStatus, Run, RunFilter, RunStatus,
};
use agentry_domain::file::{FileStatus, StoredFile};
use agentry_domain::guardrail::{Action as GuardAction, Guardrails, Stage, Trigger};
use agentry_domain::knowledge::{Chunk, Citation, Knowledge};
use agentry_domain::llm::{Role, TokenUsage, ToolCall};
use agentry_domain::mcp::{
    McpCatalog, McpServer, McpServerId, McpServerName, McpServerRef, McpSlug, McpStatus, McpTool,
    McpTransport,
};
use agentry_domain::page::Page;
use agentry_domain::provider::{BaseUrl, Provider, ProviderId, ProviderKind, ProviderSource};
use agentry_domain::task::{Task, TaskFilter, TaskId, TaskOutcome, TaskPriority, TaskStatus};
use agentry_domain::version::AgentVersion;
use agentry_storage::test_support::{PgSchemaGuard, fresh_postgres_url, fresh_sqlite_url};
use agentry_storage::{Backend, Database, PoolOptions, StorageError};
use chrono::{DateTime, Duration as TimeDelta, SubsecRound, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Fixtures

/// Every migration, in order (the same names in both trees).
const MIGRATIONS: [&str; 19] = [
    "2026-11-23-000001_init",
    "2026-11-23-000002_conversations_runs",
    "2026-11-23-000003_auth",
    "2026-11-23-000004_agent_versions",
    "2026-11-23-000005_agent_fallback_model",
    "2026-11-23-000006_change_counter",
    "2026-12-03-000007_message_tool_calls",
    "2026-12-03-000008_conversation_owner",
    "2026-12-03-000009_mcp_servers",
    "2026-12-03-000010_mcp_server_tools",
    "2026-12-03-000011_tasks",
    "2026-12-03-000012_clusters",
    "2026-12-03-000013_evals",
    "2026-12-03-000014_guardrails",
    "2026-12-03-000015_files",
    "2026-12-03-000016_insights",
    "2026-12-03-000017_knowledge",
    "2026-12-03-000018_optimizations",
    "2026-12-03-000019_knowledge_vectors",
];

fn options() -> PoolOptions {
    PoolOptions {
        max_connections: 4,
        connect_timeout: Duration::from_secs(5),
    }
}

fn sqlite_db() -> (Database, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&fresh_sqlite_url(dir.path()), options()).unwrap();
    assert_eq!(db.migrate().unwrap(), MIGRATIONS);
    (db, dir)
}

fn postgres_db() -> Option<(Database, PgSchemaGuard)> {
    let (url, guard) = fresh_postgres_url().unwrap()?;
    let db = Database::connect(&url, options()).unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    assert_eq!(db.migrate().unwrap(), MIGRATIONS);
    Some((db, guard))
}

/// Generates `sqlite::<test>` and `postgres::<test>` for each contract test.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (db, _dir) = super::sqlite_db();
                    super::$name(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((db, _schema)) = super::postgres_db() else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

contract_tests!(
    file_records_round_trip_page_and_delete,
    knowledge_chunks_replace_list_and_delete,
    knowledge_vectors_are_stored_per_model_and_go_with_their_chunks,
    agent_insert_and_get_by_id_and_key,
    agent_fields_round_trip_exactly,
    agent_without_optional_fields_round_trips,
    get_missing_agent_is_not_found,
    duplicate_name_is_a_conflict_on_name,
    duplicate_key_is_a_conflict_on_key,
    duplicate_id_is_a_conflict_on_id,
    update_changes_fields_and_tags,
    update_conflict_leaves_the_row_unchanged,
    update_missing_agent_is_not_found,
    list_is_newest_first_with_id_tiebreak,
    list_paginates_with_total,
    list_filters_by_status_type_and_cluster,
    list_filters_by_all_tags,
    list_combines_filters,
    delete_reports_existence_and_cascades_tags,
    agents_using_provider_lists_keys,
    provider_insert_get_and_list,
    provider_update_and_delete,
    provider_duplicate_id_is_a_conflict,
    provider_api_key_round_trips_and_stays_hidden,
    ping_answers,
    migrations_are_idempotent,
    concurrent_writes_succeed,
    conversation_open_creates_then_finds,
    conversation_keys_are_per_agent,
    concurrent_open_yields_one_conversation,
    open_for_missing_agent_is_not_found,
    open_with_a_taken_id_is_a_conflict_on_id,
    append_and_last_messages_order_and_limit,
    append_is_atomic,
    concurrent_appends_count_every_message,
    a_failing_write_among_concurrent_ones_fails_alone,
    append_rejects_batches_of_several_conversations,
    append_to_missing_conversation_is_not_found,
    start_conversation_stores_it_with_its_messages,
    start_conversation_conflicts_store_nothing,
    message_fields_round_trip_exactly,
    tool_calls_and_answers_round_trip_exactly,
    message_numbers_out_of_range_are_rejected,
    query_messages_by_agent_session_before_and_limit,
    list_conversations_order_pagination_and_filter,
    delete_conversation_cascades_messages,
    get_message_finds_one_by_id,
    append_if_stores_only_at_the_expected_count,
    deleting_the_agent_cascades_conversations_and_messages,
    run_fields_round_trip_exactly,
    duplicate_run_id_is_a_conflict_on_run_id,
    concurrent_runs_share_commits_and_a_taken_id_fails_alone,
    list_runs_filters_paginates_and_orders,
    get_missing_run_is_not_found,
    logged_runs_are_all_stored_by_flush,
    a_bad_run_in_a_logged_batch_loses_only_itself,
    publish_numbers_versions_from_one,
    version_snapshot_round_trips_exactly,
    bare_snapshot_round_trips,
    concurrent_publishes_get_distinct_numbers,
    publish_for_a_missing_agent_is_not_found,
    get_latest_and_list_versions,
    drafts_take_numbers_but_are_never_the_latest,
    versions_are_per_agent,
    deleting_the_agent_cascades_versions,
    user_insert_get_find_and_list,
    duplicate_username_is_a_conflict_on_username,
    user_update_and_missing_user,
    count_users_counts_admins,
    deleting_a_user_cascades_sessions_tokens_and_keys,
    session_insert_get_and_revoke,
    session_for_missing_user_is_not_found,
    refresh_token_is_consumed_once,
    concurrent_consumption_has_one_winner,
    refresh_token_for_missing_session_is_not_found,
    revoke_user_sessions_revokes_only_theirs,
    api_key_round_trips_and_is_found_by_digest,
    api_key_list_revoke_and_touch,
    duplicate_api_key_digest_is_a_conflict,
    server_secret_is_inserted_once,
    change_counter_grows_with_every_change,
    purge_deletes_expired_tokens_and_dead_sessions,
    mcp_server_insert_and_get_by_id_and_slug,
    mcp_server_fields_round_trip_exactly,
    mcp_server_duplicate_slug_is_a_conflict_on_slug,
    mcp_server_list_is_newest_first_and_paginates,
    mcp_server_update_and_delete,
    mcp_server_secrets_stay_hidden,
    mcp_server_catalog_is_stored_alone,
    tasks_are_claimed_by_priority_then_age_once,
    task_leases_expire_renew_and_guard_every_write,
    task_failures_retry_then_fail_and_cancels_win,
    task_idempotency_keys_are_per_caller,
    rate_usage_adds_up_across_reporters,
    cluster_insert_get_and_round_trip,
    cluster_duplicate_name_is_a_conflict_on_name,
    cluster_update_is_compare_and_set,
    cluster_list_by_name_and_delete,
    testsets_round_trip_and_update_by_revision,
    eval_runs_are_claimed_once_and_leases_guard_every_write,
    optimizations_one_active_per_agent_claimed_once_and_leased,
    eval_results_are_stored_once_and_counted,
    analyses_are_tallied_per_period_with_their_issues,
    idle_conversations_wait_for_their_analysis,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

/// A minimal agent named `name` (key derived), created at `t0`.
fn agent(name: &str) -> Agent {
    let name = AgentName::parse(name).unwrap();
    Agent {
        id: AgentId::generate(),
        key: AgentKey::from_name(&name).unwrap(),
        name,
        description: None,
        instructions: String::new(),
        model: ModelRef {
            provider_id: ProviderId::parse("mock").unwrap(),
            model_name: "echo".into(),
        },
        temperature: None,
        top_p: None,
        max_tokens: None,
        tags: Vec::new(),
        status: AgentStatus::Active,
        agent_type: AgentType::chat(),
        tools: Vec::new(),
        cluster: None,
        fallback_model: None,
        guardrails: Guardrails::default(),
        knowledge: Knowledge::default(),
        created_by: None,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn tags(list: &[&str]) -> Vec<Tag> {
    Tag::parse_list(list).unwrap()
}

fn with_tags(mut a: Agent, list: &[&str]) -> Agent {
    a.tags = tags(list);
    a
}

/// An agent with every optional field set, odd values included.
fn full_agent(name: &str) -> Agent {
    let now = Utc::now().trunc_subsecs(6);
    let tools = vec![
        // HTTP tools are validated (header values are single-line strings); the MCP tool
        // carries the odd JSON values.
        json!({"type": "http", "name": "customer_db", "url": "https://db.example/q", "headers": {"x-key": "s3cr\u{e9}t \"v\""}}),
        json!({"type": "mcp", "server": "search", "unicode": "héllo \u{1F600} \"quoted\" \\ back", "x": [1, 2.5, null]}),
    ];
    Agent {
        description: Some("Answers questions.\nTwo lines, 'quotes' and ünïcode.".into()),
        instructions: "You are helpful.\n\tBe brief. \u{1F916}".into(),
        model: ModelRef {
            provider_id: ProviderId::parse("openai-prod").unwrap(),
            model_name: "gpt-4o-mini".into(),
        },
        temperature: Some(Temperature::parse(0.1 + 0.2).unwrap()),
        top_p: Some(TopP::parse(1.0 / 3.0).unwrap()),
        max_tokens: Some(MaxTokens::parse(1_000_000).unwrap()),
        tags: tags(&["support", "Tier 1", "é"]),
        status: AgentStatus::Draft,
        agent_type: AgentType::parse("task").unwrap(),
        tools: ToolSpec::parse_list(tools).unwrap(),
        cluster: Some(ClusterName::parse("eu-west.1").unwrap()),
        fallback_model: Some(ModelRef {
            provider_id: ProviderId::parse("anthropic").unwrap(),
            model_name: "claude-haiku".into(),
        }),
        guardrails: Guardrails::parse(&json!({
            "input": [
                {"type": "pii", "kinds": ["email", "iban"], "action": "redact"},
                {"type": "regex", "pattern": "(?i)ünï\\d+ \"x\"", "action": "flag", "name": "odd 'name'"},
            ],
            "output": [
                {"type": "judge", "agent": "moderator", "question": "Is it rude?", "timeout_ms": 1500, "on_error": "block"},
                {"type": "json_schema", "schema": {"type": "object", "required": ["a"]}},
            ],
            "refusal_message": "Désolé \u{1F6AB}",
        }))
        .unwrap(),
        knowledge: Knowledge::parse(
            &json!({"files": ["file_0123456789abcdef0123456789abcdef", "file_fedcba9876543210fedcba9876543210"],
                "top_k": 7, "max_context_chars": 12_345}),
            "knowledge",
        )
        .unwrap(),
        created_by: Some("alice@example.com".into()),
        created_at: now - TimeDelta::microseconds(123_457),
        updated_at: now,
        ..agent(name)
    }
}

fn provider(id: &str) -> Provider {
    Provider {
        id: ProviderId::parse(id).unwrap(),
        kind: ProviderKind::OpenAi,
        base_url: Some(BaseUrl::parse("http://127.0.0.1:9000/v1").unwrap()),
        api_key: Some(SecretString::from(format!("sk-test-{id}-secret"))),
        models: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
        source: ProviderSource::Api,
        created_at: t0(),
        updated_at: t0() + TimeDelta::microseconds(1),
    }
}

/// Providers hold a `SecretString`, which is not `PartialEq`: compare field by field.
fn assert_same_provider(a: &Provider, b: &Provider) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.base_url, b.base_url);
    assert_eq!(
        a.api_key.as_ref().map(|k| k.expose_secret()),
        b.api_key.as_ref().map(|k| k.expose_secret())
    );
    assert_eq!(a.models, b.models);
    assert_eq!(a.source, b.source);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}

fn page(limit: u32, offset: u64) -> Page {
    Page::new(Some(limit), Some(offset)).unwrap()
}

fn filter_tags(list: &[&str]) -> AgentFilter {
    AgentFilter {
        tags: tags(list),
        ..AgentFilter::default()
    }
}

/// The names of the agents a list returns, in order.
async fn names(db: &Database, filter: &AgentFilter) -> Vec<String> {
    let listed = db.agents().list_agents(filter, page(100, 0)).await.unwrap();
    listed.items.iter().map(|a| a.name.to_string()).collect()
}

fn conflict_field(err: &Error) -> Option<&str> {
    match err {
        Error::Conflict { field, .. } => field.as_deref(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Agents

async fn agent_insert_and_get_by_id_and_key(db: Database) {
    let store = db.agents();
    let a = agent("Support Bot");
    store.insert_agent(&a).await.unwrap();
    assert_eq!(
        store.get_agent(&AgentRef::Id(a.id.clone())).await.unwrap(),
        a
    );
    assert_eq!(
        store
            .get_agent(&AgentRef::Key(a.key.clone()))
            .await
            .unwrap(),
        a
    );
}

async fn agent_fields_round_trip_exactly(db: Database) {
    let store = db.agents();
    let a = full_agent("Everything Set");
    store.insert_agent(&a).await.unwrap();
    let got = store.get_agent(&AgentRef::Id(a.id.clone())).await.unwrap();
    assert_eq!(got, a);
    assert_eq!(
        got.created_at.timestamp_subsec_micros(),
        a.created_at.timestamp_subsec_micros()
    );
    assert_eq!(
        got.temperature.map(|t| t.get().to_bits()),
        Some((0.1_f64 + 0.2).to_bits())
    );
    let listed = store
        .list_agents(&AgentFilter::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(listed.items, vec![a]);
}

async fn agent_without_optional_fields_round_trips(db: Database) {
    let store = db.agents();
    let a = agent("Bare");
    store.insert_agent(&a).await.unwrap();
    let got = store
        .get_agent(&AgentRef::Key(a.key.clone()))
        .await
        .unwrap();
    assert_eq!(got, a);
    assert!(got.description.is_none() && got.cluster.is_none() && got.temperature.is_none());
}

async fn get_missing_agent_is_not_found(db: Database) {
    let store = db.agents();
    let id = AgentId::generate();
    let err = store
        .get_agent(&AgentRef::Id(id.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "agent", id: got } if got == id.as_str()),
        "{err:?}"
    );
    let key = AgentRef::Key(AgentKey::parse("nobody").unwrap());
    let err = store.get_agent(&key).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "agent", id } if id == "nobody"),
        "{err:?}"
    );
}

async fn duplicate_name_is_a_conflict_on_name(db: Database) {
    let store = db.agents();
    store.insert_agent(&agent("Twin")).await.unwrap();
    let twin = Agent {
        key: AgentKey::parse("other-key").unwrap(),
        ..agent("Twin")
    };
    let err = store.insert_agent(&twin).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("name"));
    assert!(err.to_string().contains("'Twin'"), "{err}");
    assert!(store.get_agent(&AgentRef::Id(twin.id)).await.is_err());
}

async fn duplicate_key_is_a_conflict_on_key(db: Database) {
    let store = db.agents();
    let first = agent("First");
    store.insert_agent(&first).await.unwrap();
    let second = Agent {
        key: first.key.clone(),
        ..with_tags(agent("Second"), &["x"])
    };
    let err = store.insert_agent(&second).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("key"));
    assert!(err.to_string().contains("'first'"), "{err}");
    assert!(
        names(&db, &filter_tags(&["x"])).await.is_empty(),
        "no tag rows are left behind"
    );
}

async fn duplicate_id_is_a_conflict_on_id(db: Database) {
    let store = db.agents();
    let first = agent("First");
    store.insert_agent(&first).await.unwrap();
    let err = store
        .insert_agent(&Agent {
            id: first.id.clone(),
            ..agent("Second")
        })
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("id"));
}

async fn update_changes_fields_and_tags(db: Database) {
    let store = db.agents();
    let before = with_tags(agent("Before"), &["old", "kept"]);
    store.insert_agent(&before).await.unwrap();
    let after = Agent {
        id: before.id.clone(),
        created_at: before.created_at,
        ..with_tags(full_agent("After"), &["kept", "new"])
    };
    store.update_agent(&after).await.unwrap();
    assert_eq!(
        store
            .get_agent(&AgentRef::Id(before.id.clone()))
            .await
            .unwrap(),
        after
    );
    assert!(names(&db, &filter_tags(&["old"])).await.is_empty());
    assert_eq!(names(&db, &filter_tags(&["new", "kept"])).await, ["After"]);
    let cleared = Agent {
        tags: Vec::new(),
        description: None,
        cluster: None,
        temperature: None,
        ..after
    };
    store.update_agent(&cleared).await.unwrap();
    assert_eq!(
        store.get_agent(&AgentRef::Id(before.id)).await.unwrap(),
        cleared
    );
    assert!(names(&db, &filter_tags(&["kept"])).await.is_empty());
}

async fn update_conflict_leaves_the_row_unchanged(db: Database) {
    let store = db.agents();
    let taken = agent("Taken");
    let mine = with_tags(agent("Mine"), &["a"]);
    store.insert_agent(&taken).await.unwrap();
    store.insert_agent(&mine).await.unwrap();
    let by_name = Agent {
        name: taken.name.clone(),
        ..with_tags(mine.clone(), &["b"])
    };
    assert_eq!(
        conflict_field(&store.update_agent(&by_name).await.unwrap_err()),
        Some("name")
    );
    let by_key = Agent {
        key: taken.key.clone(),
        ..with_tags(mine.clone(), &["b"])
    };
    assert_eq!(
        conflict_field(&store.update_agent(&by_key).await.unwrap_err()),
        Some("key")
    );
    assert_eq!(
        store
            .get_agent(&AgentRef::Id(mine.id.clone()))
            .await
            .unwrap(),
        mine
    );
    assert_eq!(names(&db, &filter_tags(&["a"])).await, ["Mine"]);
    assert!(names(&db, &filter_tags(&["b"])).await.is_empty());
}

async fn update_missing_agent_is_not_found(db: Database) {
    let ghost = with_tags(agent("Ghost"), &["boo"]);
    let err = db.agents().update_agent(&ghost).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "agent", id } if id == ghost.id.as_str()),
        "{err:?}"
    );
    assert!(names(&db, &filter_tags(&["boo"])).await.is_empty());
}

async fn list_is_newest_first_with_id_tiebreak(db: Database) {
    let store = db.agents();
    // Inserted out of order; `c1` and `c2` share a timestamp, `c2` has the larger id.
    let spec = [
        ("Middle", 60_000_000),
        ("Oldest", 0),
        ("C1", 120_000_001),
        ("C2", 120_000_001),
        ("Micro", 120_000_000),
    ];
    for (name, micros) in spec {
        let a = Agent {
            created_at: t0() + TimeDelta::microseconds(micros),
            ..agent(name)
        };
        store.insert_agent(&a).await.unwrap();
    }
    assert_eq!(
        names(&db, &AgentFilter::default()).await,
        ["C2", "C1", "Micro", "Middle", "Oldest"]
    );
}

async fn list_paginates_with_total(db: Database) {
    let store = db.agents();
    for i in 0..7 {
        let a = Agent {
            created_at: t0() + TimeDelta::seconds(i),
            ..agent(&format!("Agent {i}"))
        };
        store.insert_agent(&a).await.unwrap();
    }
    let all = AgentFilter::default();
    let first = store.list_agents(&all, page(3, 0)).await.unwrap();
    assert_eq!((first.total, first.page), (7, page(3, 0)));
    let names_of = |p: &agentry_domain::page::Paged<Agent>| {
        p.items
            .iter()
            .map(|a| a.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names_of(&first), ["Agent 6", "Agent 5", "Agent 4"]);
    let last = store.list_agents(&all, page(3, 6)).await.unwrap();
    assert_eq!(
        (names_of(&last), last.total),
        (vec!["Agent 0".to_owned()], 7)
    );
    let beyond = store.list_agents(&all, page(3, 50)).await.unwrap();
    assert_eq!((beyond.items.len(), beyond.total), (0, 7));
}

/// An agent for the filter tests: name, status, type, cluster, tags.
type FilterSpec = (
    &'static str,
    AgentStatus,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
);

async fn seed_for_filters(db: &Database) {
    let spec: [FilterSpec; 5] = [
        (
            "A",
            AgentStatus::Active,
            "chat",
            Some("eu"),
            &["x", "y", "z"],
        ),
        ("B", AgentStatus::Active, "task", Some("us"), &["x", "y"]),
        ("C", AgentStatus::Draft, "chat", Some("eu"), &["x"]),
        ("D", AgentStatus::Archived, "chat", None, &["y"]),
        ("E", AgentStatus::Active, "chat", None, &[]),
    ];
    for (i, (name, status, kind, cluster, list)) in spec.into_iter().enumerate() {
        let a = Agent {
            status,
            agent_type: AgentType::parse(kind).unwrap(),
            cluster: cluster.map(|c| ClusterName::parse(c).unwrap()),
            created_at: t0() - TimeDelta::seconds(i64::try_from(i).unwrap()),
            ..with_tags(agent(name), list)
        };
        db.agents().insert_agent(&a).await.unwrap();
    }
}

async fn list_filters_by_status_type_and_cluster(db: Database) {
    seed_for_filters(&db).await;
    let status = AgentFilter {
        status: Some(AgentStatus::Active),
        ..AgentFilter::default()
    };
    assert_eq!(names(&db, &status).await, ["A", "B", "E"]);
    let kind = AgentFilter {
        agent_type: Some(AgentType::parse("task").unwrap()),
        ..AgentFilter::default()
    };
    assert_eq!(names(&db, &kind).await, ["B"]);
    let cluster = AgentFilter {
        cluster: Some(ClusterName::parse("eu").unwrap()),
        ..AgentFilter::default()
    };
    assert_eq!(names(&db, &cluster).await, ["A", "C"]);
    let keys = |keys: &[&str]| Some(keys.iter().map(|k| (*k).to_owned()).collect());
    let allowed = AgentFilter {
        keys: keys(&["c", "a", "zz"]),
        ..AgentFilter::default()
    };
    assert_eq!(
        names(&db, &allowed).await,
        ["A", "C"],
        "an allowlist of keys"
    );
    let allowed_active = AgentFilter {
        status: Some(AgentStatus::Active),
        ..allowed
    };
    assert_eq!(names(&db, &allowed_active).await, ["A"]);
    let nothing_allowed = AgentFilter {
        keys: keys(&[]),
        ..AgentFilter::default()
    };
    assert!(names(&db, &nothing_allowed).await.is_empty());
    let none = AgentFilter {
        cluster: Some(ClusterName::parse("mars").unwrap()),
        ..AgentFilter::default()
    };
    let listed = db
        .agents()
        .list_agents(&none, Page::default())
        .await
        .unwrap();
    assert_eq!((listed.items.len(), listed.total), (0, 0));
}

async fn list_filters_by_all_tags(db: Database) {
    seed_for_filters(&db).await;
    assert_eq!(names(&db, &filter_tags(&["x"])).await, ["A", "B", "C"]);
    assert_eq!(names(&db, &filter_tags(&["x", "y"])).await, ["A", "B"]);
    assert_eq!(names(&db, &filter_tags(&["y", "z", "x"])).await, ["A"]);
    assert!(names(&db, &filter_tags(&["x", "nope"])).await.is_empty());
    let listed = db
        .agents()
        .list_agents(&filter_tags(&["y"]), page(1, 0))
        .await
        .unwrap();
    assert_eq!((listed.items.len(), listed.total), (1, 3));
}

async fn list_combines_filters(db: Database) {
    seed_for_filters(&db).await;
    let f = AgentFilter {
        tags: tags(&["x"]),
        status: Some(AgentStatus::Active),
        agent_type: Some(AgentType::chat()),
        cluster: Some(ClusterName::parse("eu").unwrap()),
        keys: None,
    };
    assert_eq!(names(&db, &f).await, ["A"]);
    let f = AgentFilter {
        tags: tags(&["y"]),
        status: Some(AgentStatus::Active),
        ..AgentFilter::default()
    };
    assert_eq!(names(&db, &f).await, ["A", "B"]);
    let f = AgentFilter {
        tags: tags(&["x"]),
        status: Some(AgentStatus::Archived),
        ..AgentFilter::default()
    };
    assert!(names(&db, &f).await.is_empty());
}

async fn delete_reports_existence_and_cascades_tags(db: Database) {
    let store = db.agents();
    let a = with_tags(agent("Doomed"), &["t1", "t2"]);
    store.insert_agent(&a).await.unwrap();
    assert!(store.delete_agent(&a.id).await.unwrap());
    assert!(!store.delete_agent(&a.id).await.unwrap());
    assert!(matches!(
        store.get_agent(&AgentRef::Id(a.id.clone())).await,
        Err(Error::NotFound { .. })
    ));
    assert!(names(&db, &filter_tags(&["t1"])).await.is_empty());
    // Re-inserting the same id and tags would collide with leftover tag rows.
    store.insert_agent(&a).await.unwrap();
    assert_eq!(names(&db, &filter_tags(&["t1", "t2"])).await, ["Doomed"]);
}

async fn agents_using_provider_lists_keys(db: Database) {
    let store = db.agents();
    let openai = ModelRef {
        provider_id: ProviderId::parse("openai").unwrap(),
        model_name: "gpt-4o".into(),
    };
    for name in ["Zed", "Alpha", "Mid"] {
        store
            .insert_agent(&Agent {
                model: openai.clone(),
                ..agent(name)
            })
            .await
            .unwrap();
    }
    store.insert_agent(&agent("On Mock")).await.unwrap();
    let keys = store
        .agents_using_provider(&openai.provider_id)
        .await
        .unwrap();
    let mut keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
    keys.sort();
    assert_eq!(keys, ["alpha", "mid", "zed"]);
    let unused = store
        .agents_using_provider(&ProviderId::parse("unused").unwrap())
        .await
        .unwrap();
    assert!(unused.is_empty());
}

async fn concurrent_writes_succeed(db: Database) {
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = db.agents();
            tokio::spawn(async move {
                store
                    .insert_agent(&with_tags(agent(&format!("Busy {i}")), &["busy"]))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let listed = db
        .agents()
        .list_agents(&filter_tags(&["busy"]), page(100, 0))
        .await
        .unwrap();
    assert_eq!(listed.total, 24);
}

// ---------------------------------------------------------------------------------------
// Providers

async fn provider_insert_get_and_list(db: Database) {
    let store = db.providers();
    assert!(store.list_providers().await.unwrap().is_empty());
    let bare = Provider {
        base_url: None,
        api_key: None,
        models: Vec::new(),
        kind: ProviderKind::Anthropic,
        ..provider("b-bare")
    };
    for p in [provider("c-openai"), bare.clone(), provider("a-local")] {
        store.insert_provider(&p).await.unwrap();
    }
    assert_same_provider(&store.get_provider(&bare.id).await.unwrap(), &bare);
    let listed = store.list_providers().await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a-local", "b-bare", "c-openai"]);
    assert_same_provider(&listed[2], &provider("c-openai"));
    let missing = ProviderId::parse("nope").unwrap();
    let err = store.get_provider(&missing).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "provider", id } if id == "nope"),
        "{err:?}"
    );
}

async fn provider_update_and_delete(db: Database) {
    let store = db.providers();
    let p = provider("gw");
    store.insert_provider(&p).await.unwrap();
    let changed = Provider {
        kind: ProviderKind::Mock,
        base_url: None,
        api_key: None,
        models: vec!["echo".into()],
        updated_at: t0() + TimeDelta::days(1),
        ..p.clone()
    };
    store.update_provider(&changed).await.unwrap();
    assert_same_provider(&store.get_provider(&p.id).await.unwrap(), &changed);
    let ghost = provider("ghost");
    let err = store.update_provider(&ghost).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "provider", id } if id == "ghost"),
        "{err:?}"
    );
    assert!(store.delete_provider(&p.id).await.unwrap());
    assert!(!store.delete_provider(&p.id).await.unwrap());
    assert!(store.list_providers().await.unwrap().is_empty());
}

async fn provider_duplicate_id_is_a_conflict(db: Database) {
    let store = db.providers();
    store.insert_provider(&provider("dup")).await.unwrap();
    let again = Provider {
        kind: ProviderKind::Anthropic,
        ..provider("dup")
    };
    let err = store.insert_provider(&again).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("id"));
    assert_eq!(
        store.get_provider(&again.id).await.unwrap().kind,
        ProviderKind::OpenAi
    );
}

async fn provider_api_key_round_trips_and_stays_hidden(db: Database) {
    let store = db.providers();
    let p = provider("keyed");
    store.insert_provider(&p).await.unwrap();
    let got = store.get_provider(&p.id).await.unwrap();
    assert_eq!(
        got.api_key.as_ref().map(|k| k.expose_secret()),
        Some("sk-test-keyed-secret")
    );
    let err = store.insert_provider(&p).await.unwrap_err();
    for shown in [
        format!("{got:?}"),
        format!("{err:?}"),
        err.to_string(),
        format!("{db:?}"),
    ] {
        assert!(!shown.contains("sk-test-keyed-secret"), "{shown}");
    }
}

// ---------------------------------------------------------------------------------------
// Conversations and messages

/// Stores a minimal agent named `name` and returns its id.
fn stored_file(id: &str, at: DateTime<Utc>) -> StoredFile {
    let Value::Object(metadata) = json!({"description": "Ünïcode 'quotes' \"x\"", "n": [1, 2.5]})
    else {
        unreachable!()
    };
    StoredFile {
        id: id.to_owned(),
        filename: "rapport d'été.pdf".to_owned(),
        content_type: "application/pdf".to_owned(),
        size_bytes: u64::try_from(i64::MAX).unwrap(),
        sha256: "ab".repeat(32),
        metadata,
        status: FileStatus::Processing,
        status_reason: None,
        created_by: Some("key:k1".to_owned()),
        created_at: at,
    }
}

async fn file_records_round_trip_page_and_delete(db: Database) {
    let store = db.files();
    let now = Utc::now().trunc_subsecs(6);
    let a = stored_file("file_a", now - TimeDelta::seconds(2));
    let b = stored_file("file_b", now - TimeDelta::seconds(1));
    let c = StoredFile {
        metadata: Map::new(),
        created_by: None,
        ..stored_file("file_c", now)
    };
    for f in [&a, &b, &c] {
        store.insert_file(f).await.unwrap();
    }
    assert_eq!(store.get_file("file_a").await.unwrap(), a);
    assert!(matches!(
        store.insert_file(&a).await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        store.get_file("file_x").await,
        Err(Error::NotFound { entity: "file", .. })
    ));
    let page = store
        .list_files(Page::new(Some(2), Some(0)).unwrap())
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.items, vec![c.clone(), b.clone()]);
    let page = store
        .list_files(Page::new(Some(2), Some(2)).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items, vec![a.clone()]);
    assert!(
        store
            .set_file_status("file_a", FileStatus::Failed, Some("no text"))
            .await
            .unwrap()
    );
    let failed = store.get_file("file_a").await.unwrap();
    assert_eq!(
        (failed.status, failed.status_reason.as_deref()),
        (FileStatus::Failed, Some("no text"))
    );
    assert!(
        !store
            .set_file_status("file_x", FileStatus::Ready, None)
            .await
            .unwrap()
    );
    assert!(store.delete_file("file_a").await.unwrap());
    assert!(!store.delete_file("file_a").await.unwrap());
    assert_eq!(store.list_files(Page::default()).await.unwrap().total, 2);
}

fn chunk(file: &str, position: u32, text: &str) -> Chunk {
    Chunk {
        file_id: file.to_owned(),
        position,
        text: text.to_owned(),
    }
}

async fn knowledge_chunks_replace_list_and_delete(db: Database) {
    let store = db.knowledge_chunks();
    assert!(store.chunked_files().await.unwrap().is_empty());
    let odd = "Héllo \u{1F600}\n\t'single' \"double\" \\ back; DROP TABLE knowledge_chunks; --";
    let a: Vec<Chunk> = (0..250)
        .map(|i| chunk("file_a", i, &format!("part {i}")))
        .collect();
    store.replace_chunks("file_a", &a).await.unwrap();
    store
        .replace_chunks("file_b", &[chunk("file_b", 0, odd), chunk("file_b", 1, "")])
        .await
        .unwrap();
    assert_eq!(store.chunks_of("file_a").await.unwrap(), a);
    assert_eq!(store.chunks_of("file_b").await.unwrap()[0].text, odd);
    assert_eq!(store.chunked_files().await.unwrap(), ["file_a", "file_b"]);
    // Replacing drops the old chunks (fewer now).
    let fewer = vec![chunk("file_a", 0, "only")];
    store.replace_chunks("file_a", &fewer).await.unwrap();
    assert_eq!(store.chunks_of("file_a").await.unwrap(), fewer);
    // A chunk of another file is refused and changes nothing.
    assert!(
        store
            .replace_chunks("file_a", &[chunk("file_b", 5, "x")])
            .await
            .is_err()
    );
    assert_eq!(store.chunks_of("file_a").await.unwrap(), fewer);
    store.delete_chunks("file_a").await.unwrap();
    store.delete_chunks("file_x").await.unwrap();
    assert!(store.chunks_of("file_a").await.unwrap().is_empty());
    assert_eq!(store.chunked_files().await.unwrap(), ["file_b"]);
}

async fn knowledge_vectors_are_stored_per_model_and_go_with_their_chunks(db: Database) {
    let store = db.knowledge_chunks();
    let a: Vec<Chunk> = (0..3)
        .map(|i| chunk("file_a", i, &format!("part {i}")))
        .collect();
    store.replace_chunks("file_a", &a).await.unwrap();
    store
        .replace_chunks("file_b", &[chunk("file_b", 0, "b")])
        .await
        .unwrap();
    let missing = |n| {
        let store = store.clone();
        async move {
            store
                .chunks_without_vectors("p/m1", n)
                .await
                .unwrap()
                .iter()
                .map(|c| (c.file_id.clone(), c.position))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        missing(2).await,
        [("file_a".to_owned(), 0), ("file_a".to_owned(), 1)]
    );
    assert_eq!(missing(10).await.len(), 4);
    // Exact f32s survive (odd values included); an unknown position is ignored.
    let v0 = vec![0.1_f32, -2.5, 1.0e-20, f32::MAX];
    store
        .set_vectors(
            "file_a",
            "p/m1",
            &[
                (0, v0.clone()),
                (1, vec![1.0, 0.0, 0.0, 0.0]),
                (9, vec![1.0]),
            ],
        )
        .await
        .unwrap();
    store
        .set_vectors("file_b", "p/m2", &[(0, vec![0.0, 1.0, 0.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(
        missing(10).await,
        [("file_a".to_owned(), 2), ("file_b".to_owned(), 0)]
    );
    let all = store.vectors_of(None, "p/m1").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].position, all[0].text.as_str()), (0, "part 0"));
    assert_eq!(all[0].vector, v0);
    assert_eq!(
        store.vectors_of(None, "p/m2").await.unwrap()[0].file_id,
        "file_b"
    );
    let only_b = ["file_b".to_owned()];
    assert!(
        store
            .vectors_of(Some(&only_b), "p/m1")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .vectors_of(Some(&[]), "p/m1")
            .await
            .unwrap()
            .is_empty()
    );
    // The model changes: vectors of the old one are replaced.
    store
        .set_vectors("file_b", "p/m1", &[(0, vec![0.5, 0.5, 0.5, 0.5])])
        .await
        .unwrap();
    assert_eq!(
        store.vectors_of(Some(&only_b), "p/m1").await.unwrap().len(),
        1
    );
    assert!(store.vectors_of(None, "p/m2").await.unwrap().is_empty());
    // The chunks are replaced or deleted: their vectors go with them.
    store
        .replace_chunks("file_a", &[chunk("file_a", 0, "new")])
        .await
        .unwrap();
    assert_eq!(store.vectors_of(None, "p/m1").await.unwrap().len(), 1);
    assert_eq!(missing(10).await, [("file_a".to_owned(), 0)]);
    store.delete_chunks("file_b").await.unwrap();
    assert!(store.vectors_of(None, "p/m1").await.unwrap().is_empty());
    // Chunks without vectors still read as they were.
    assert_eq!(store.chunks_of("file_a").await.unwrap()[0].text, "new");
}

async fn seed_agent(db: &Database, name: &str) -> AgentId {
    let a = agent(name);
    db.agents().insert_agent(&a).await.unwrap();
    a.id
}

fn context() -> Map<String, Value> {
    let Value::Object(map) = json!({"user_id": "u-1", "channel": {"kind": "web", "ids": [1, 2]}})
    else {
        unreachable!()
    };
    map
}

/// Opens the conversation `id` of `agent` with key `key` at `t0`, and checks it was new.
async fn open_new(db: &Database, id: &str, agent: &AgentId, key: &str) -> Conversation {
    let (conv, created) = db
        .conversations()
        .open_conversation(&fresh(id, agent, key, &Map::new(), t0()))
        .await
        .unwrap();
    assert!(created, "{id} should be new");
    conv
}

/// A conversation to open: empty, opened by nobody in particular.
fn fresh(
    id: &str,
    agent: &AgentId,
    key: &str,
    context: &Map<String, Value>,
    at: DateTime<Utc>,
) -> Conversation {
    Conversation {
        id: id.to_owned(),
        agent_id: agent.clone(),
        session_key: key.to_owned(),
        context: context.clone(),
        message_count: 0,
        created_at: at,
        updated_at: at,
        created_by: None,
    }
}

/// A minimal user message of `conv`, `micros` after `t0`.
fn msg(conv: &Conversation, id: &str, micros: i64) -> Message {
    Message {
        id: id.to_owned(),
        conversation_id: conv.id.clone(),
        agent_id: conv.agent_id.clone(),
        role: Role::User,
        content: format!("content of {id}"),
        tool_calls: Vec::new(),
        tool_call_id: None,
        usage: None,
        latency_ms: None,
        model: None,
        agent_version: None,
        status: MessageStatus::Complete,
        created_at: t0() + TimeDelta::microseconds(micros),
        annotations: Annotations::default(),
    }
}

fn ids(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

/// A conversation of `agent` not stored yet, counting `n` messages, the last at `last`.
fn unsaved(id: &str, agent: &AgentId, key: &str, n: u64, last: DateTime<Utc>) -> Conversation {
    Conversation {
        id: id.to_owned(),
        agent_id: agent.clone(),
        session_key: key.to_owned(),
        context: context(),
        message_count: n,
        created_at: t0(),
        updated_at: last,
        created_by: Some("user_1".into()),
    }
}

async fn start_conversation_stores_it_with_its_messages(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Starter").await;
    let last = t0() + TimeDelta::microseconds(2);
    let conv = unsaved("conv_s", &agent, "conv_s", 2, last);
    let first = [msg(&conv, "m1", 1), msg(&conv, "m2", 2)];
    store.start_conversation(&conv, &first).await.unwrap();
    assert_eq!(store.get_conversation("conv_s").await.unwrap(), conv);
    assert_eq!(
        store.find_conversation(&agent, "conv_s").await.unwrap(),
        Some(conv.clone())
    );
    let stored = store.last_messages("conv_s", 10).await.unwrap();
    assert_eq!(stored, first.to_vec());
    // Later turns append as usual.
    store.append_messages(&[msg(&conv, "m3", 3)]).await.unwrap();
    let again = store.get_conversation("conv_s").await.unwrap();
    assert_eq!(again.message_count, 3);
}

async fn start_conversation_conflicts_store_nothing(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Clasher").await;
    let taken = open_new(&db, "conv_taken", &agent, "key-taken").await;
    store
        .append_messages(&[msg(&taken, "m_taken", 1)])
        .await
        .unwrap();
    let count = |id: &'static str| {
        let store = db.conversations();
        async move { store.last_messages(id, 10).await.unwrap().len() }
    };

    // The conversation id is taken.
    let dup = unsaved("conv_taken", &agent, "other-key", 1, t0());
    let err = store
        .start_conversation(&dup, &[msg(&dup, "m_new", 2)])
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("id"), "{err:?}");
    assert_eq!(count("conv_taken").await, 1);

    // The session key is taken for this agent.
    let same_key = unsaved("conv_other", &agent, "key-taken", 1, t0());
    let err = store
        .start_conversation(&same_key, &[msg(&same_key, "m_new", 2)])
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("session_id"), "{err:?}");
    assert!(matches!(
        store.get_conversation("conv_other").await,
        Err(Error::NotFound { .. })
    ));

    // A message id is taken: the conversation is not stored either.
    let fresh = unsaved("conv_fresh", &agent, "fresh", 2, t0());
    let err = store
        .start_conversation(&fresh, &[msg(&fresh, "m_ok", 1), msg(&fresh, "m_taken", 2)])
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("id"), "{err:?}");
    assert!(matches!(
        store.get_conversation("conv_fresh").await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(count("conv_fresh").await, 0);

    // A missing agent.
    let orphan = unsaved("conv_orphan", &AgentId::generate(), "k", 0, t0());
    let err = store.start_conversation(&orphan, &[]).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity, .. } if *entity == "agent"),
        "{err:?}"
    );

    // A message of another conversation.
    let mixed = unsaved("conv_mixed", &agent, "mixed", 1, t0());
    let err = store
        .start_conversation(&mixed, &[msg(&taken, "m_stray", 3)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    assert!(store.get_conversation("conv_mixed").await.is_err());
}

async fn conversation_open_creates_then_finds(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Talker").await;
    let at = t0() + TimeDelta::microseconds(654_321);
    let (conv, created) = store
        .open_conversation(&Conversation {
            created_by: Some("key:key_1".into()),
            ..fresh("conv_1", &agent, "session-1", &context(), at)
        })
        .await
        .unwrap();
    assert!(created);
    let expected = Conversation {
        id: "conv_1".into(),
        agent_id: agent.clone(),
        session_key: "session-1".into(),
        context: context(),
        message_count: 0,
        created_at: at,
        updated_at: at,
        created_by: Some("key:key_1".into()),
    };
    assert_eq!(conv, expected);
    // Opening again (another id, context and time) finds the stored one, unchanged.
    let (again, created) = store
        .open_conversation(&fresh("conv_2", &agent, "session-1", &Map::new(), t0()))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, expected);
    assert_eq!(
        store.find_conversation(&agent, "session-1").await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        store.find_conversation(&agent, "other").await.unwrap(),
        None
    );
    assert_eq!(store.get_conversation("conv_1").await.unwrap(), expected);
    let err = store.get_conversation("conv_2").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "conversation", id } if id == "conv_2"),
        "{err:?}"
    );
}

async fn conversation_keys_are_per_agent(db: Database) {
    let store = db.conversations();
    let a = seed_agent(&db, "A").await;
    let b = seed_agent(&db, "B").await;
    let of_a = open_new(&db, "conv_a", &a, "shared-key").await;
    let of_b = open_new(&db, "conv_b", &b, "shared-key").await;
    assert_ne!(of_a.id, of_b.id);
    assert_eq!(
        store.find_conversation(&b, "shared-key").await.unwrap(),
        Some(of_b)
    );
    assert_eq!(
        store.find_conversation(&a, "shared-key").await.unwrap(),
        Some(of_a)
    );
}

async fn concurrent_open_yields_one_conversation(db: Database) {
    let agent = seed_agent(&db, "Popular").await;
    // Distinct ids (the usual case), then one id shared by every caller.
    for (key, shared_id) in [("race-1", false), ("race-2", true)] {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (store, agent) = (db.conversations(), agent.clone());
                let id = if shared_id {
                    format!("conv_{key}")
                } else {
                    format!("conv_{key}_{i}")
                };
                tokio::spawn(async move {
                    store
                        .open_conversation(&fresh(&id, &agent, key, &Map::new(), t0()))
                        .await
                })
            })
            .collect();
        let mut opened = Vec::new();
        for task in tasks {
            opened.push(task.await.unwrap().unwrap());
        }
        let created = opened.iter().filter(|(_, created)| *created).count();
        assert_eq!(created, 1, "{key}: exactly one call creates it");
        let first = &opened[0].0;
        assert!(opened.iter().all(|(c, _)| c == first), "{key}: {opened:?}");
    }
    let listed = db
        .conversations()
        .list_conversations(Some(std::slice::from_ref(&agent)), page(100, 0))
        .await
        .unwrap();
    assert_eq!(listed.total, 2);
}

async fn open_for_missing_agent_is_not_found(db: Database) {
    let ghost = AgentId::generate();
    let err = db
        .conversations()
        .open_conversation(&fresh("conv_x", &ghost, "k", &Map::new(), t0()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "agent", id } if id == ghost.as_str()),
        "{err:?}"
    );
    assert!(db.conversations().get_conversation("conv_x").await.is_err());
}

async fn open_with_a_taken_id_is_a_conflict_on_id(db: Database) {
    let agent = seed_agent(&db, "Reuser").await;
    let first = open_new(&db, "conv_taken", &agent, "first").await;
    let err = db
        .conversations()
        .open_conversation(&fresh("conv_taken", &agent, "second", &Map::new(), t0()))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("id"));
    assert_eq!(
        db.conversations()
            .get_conversation("conv_taken")
            .await
            .unwrap(),
        first
    );
}

async fn append_and_last_messages_order_and_limit(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Chatty").await;
    let conv = open_new(&db, "conv_1", &agent, "s").await;
    let other = open_new(&db, "conv_2", &agent, "t").await;
    // `m3a` and `m3b` share a time: the id breaks the tie. Batches arrive out of order.
    store
        .append_messages(&[msg(&conv, "m3b", 3), msg(&conv, "m4", 4)])
        .await
        .unwrap();
    store
        .append_messages(&[
            msg(&conv, "m1", 1),
            msg(&conv, "m2", 2),
            msg(&conv, "m3a", 3),
        ])
        .await
        .unwrap();
    store
        .append_messages(&[msg(&other, "x1", 10)])
        .await
        .unwrap();
    let all = store.last_messages("conv_1", 100).await.unwrap();
    assert_eq!(ids(&all), ["m1", "m2", "m3a", "m3b", "m4"]);
    assert_eq!(all[0], msg(&conv, "m1", 1));
    let newest = store.last_messages("conv_1", 3).await.unwrap();
    assert_eq!(ids(&newest), ["m3a", "m3b", "m4"]);
    assert_eq!(
        ids(&store.last_messages("conv_1", 1).await.unwrap()),
        ["m4"]
    );
    assert!(store.last_messages("conv_1", 0).await.unwrap().is_empty());
    assert!(
        store
            .last_messages("conv_none", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Each batch adds its count; updated_at becomes the time of the batch's last message.
    assert_eq!(
        store
            .get_conversation("conv_1")
            .await
            .unwrap()
            .message_count,
        5
    );
    store
        .append_messages(&[msg(&conv, "m6", 6), msg(&conv, "m7", 7)])
        .await
        .unwrap();
    let stored = store.get_conversation("conv_1").await.unwrap();
    assert_eq!(stored.message_count, 7);
    assert_eq!(stored.updated_at, t0() + TimeDelta::microseconds(7));
    assert_eq!(stored.created_at, t0());
    assert_eq!(
        store
            .get_conversation("conv_2")
            .await
            .unwrap()
            .message_count,
        1
    );
    // Appending nothing changes nothing.
    store.append_messages(&[]).await.unwrap();
    assert_eq!(store.get_conversation("conv_1").await.unwrap(), stored);
}

async fn concurrent_appends_count_every_message(db: Database) {
    let agent = seed_agent(&db, "Busy").await;
    let conv = open_new(&db, "conv_1", &agent, "s").await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (store, conv) = (db.conversations(), conv.clone());
            tokio::spawn(async move {
                let batch = [
                    msg(&conv, &format!("m{i}a"), i),
                    msg(&conv, &format!("m{i}b"), i),
                ];
                store.append_messages(&batch).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let store = db.conversations();
    assert_eq!(
        store
            .get_conversation("conv_1")
            .await
            .unwrap()
            .message_count,
        24
    );
    assert_eq!(store.last_messages("conv_1", 100).await.unwrap().len(), 24);
}

/// Concurrent writes share group commits; one that fails (a taken message id) is undone
/// whole, its other message included, and the writes batched with it are stored.
async fn a_failing_write_among_concurrent_ones_fails_alone(db: Database) {
    let agent = seed_agent(&db, "Crowded").await;
    let conv = open_new(&db, "conv_1", &agent, "s").await;
    let store = db.conversations();
    store
        .append_messages(&[msg(&conv, "taken", 0)])
        .await
        .unwrap();
    for round in 0..3 {
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (store, conv) = (db.conversations(), conv.clone());
                tokio::spawn(async move {
                    let second = if i == 5 {
                        "taken".to_owned()
                    } else {
                        format!("r{round}m{i}b")
                    };
                    let batch = [
                        msg(&conv, &format!("r{round}m{i}a"), i),
                        msg(&conv, &second, i),
                    ];
                    (i, store.append_messages(&batch).await)
                })
            })
            .collect();
        for task in tasks {
            let (i, result) = task.await.unwrap();
            assert_eq!(result.is_err(), i == 5, "write {i}: {result:?}");
        }
        assert!(
            store
                .get_message(&format!("r{round}m5a"))
                .await
                .unwrap()
                .is_none(),
            "the failed write's first message was undone with it"
        );
    }
    let stored = store.get_conversation("conv_1").await.unwrap();
    assert_eq!(stored.message_count, 1 + 3 * 22);
    assert_eq!(store.last_messages("conv_1", 200).await.unwrap().len(), 67);
}

async fn append_rejects_batches_of_several_conversations(db: Database) {
    let store = db.conversations();
    let a = seed_agent(&db, "A").await;
    let b = seed_agent(&db, "B").await;
    let one = open_new(&db, "conv_1", &a, "s").await;
    let two = open_new(&db, "conv_2", &a, "t").await;
    let err = store
        .append_messages(&[msg(&one, "m1", 1), msg(&two, "m2", 2)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    // A message claiming another agent than the conversation's.
    let foreign = Message {
        agent_id: b,
        ..msg(&one, "m3", 3)
    };
    let err = store.append_messages(&[foreign]).await.unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    for id in ["conv_1", "conv_2"] {
        assert!(store.last_messages(id, 10).await.unwrap().is_empty());
        assert_eq!(store.get_conversation(id).await.unwrap().message_count, 0);
    }
}

async fn append_is_atomic(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Careful").await;
    let conv = open_new(&db, "conv_1", &agent, "s").await;
    store.append_messages(&[msg(&conv, "m1", 1)]).await.unwrap();
    let before = store.get_conversation("conv_1").await.unwrap();
    // The batch repeats an existing id after a new one: nothing of it is stored.
    let err = store
        .append_messages(&[msg(&conv, "m2", 2), msg(&conv, "m1", 3)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    // A duplicate within the batch itself fails the same way.
    let err = store
        .append_messages(&[msg(&conv, "m5", 5), msg(&conv, "m5", 6)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(
        ids(&store.last_messages("conv_1", 10).await.unwrap()),
        ["m1"]
    );
    assert_eq!(store.get_conversation("conv_1").await.unwrap(), before);
    assert_eq!(before.message_count, 1);
}

async fn append_to_missing_conversation_is_not_found(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Lost").await;
    let ghost = Conversation {
        id: "conv_ghost".into(),
        agent_id: agent.clone(),
        session_key: "ghost".into(),
        context: Map::new(),
        message_count: 0,
        created_at: t0(),
        updated_at: t0(),
        created_by: None,
    };
    let err = store
        .append_messages(&[msg(&ghost, "m1", 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "conversation", id } if id == "conv_ghost"),
        "{err:?}"
    );
    let query = MessageQuery {
        agent_id: agent,
        session_key: None,
        before: None,
        limit: 10,
    };
    assert!(store.query_messages(&query).await.unwrap().is_empty());
}

async fn message_fields_round_trip_exactly(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Precise").await;
    let conv = open_new(&db, "conv_1", &agent, "s").await;
    let now = Utc::now().trunc_subsecs(6);
    let user = Message {
        content: "Héllo \u{1F600}\n\t'single' \"double\" \\ back; DROP TABLE messages; --".into(),
        created_at: now - TimeDelta::microseconds(999_999),
        ..msg(&conv, "msg_user", 0)
    };
    let assistant = Message {
        role: Role::Assistant,
        content: String::new(),
        usage: Some(TokenUsage {
            prompt_tokens: 12,
            completion_tokens: 34,
            total_tokens: 46,
        }),
        latency_ms: Some(1_234_567_890_123),
        model: Some(ModelRef {
            provider_id: ProviderId::parse("openai-prod").unwrap(),
            model_name: "gpt-4o-mini".into(),
        }),
        agent_version: Some(7),
        status: MessageStatus::Incomplete,
        created_at: now - TimeDelta::microseconds(1),
        annotations: Annotations {
            guardrails: vec![Trigger {
                stage: Stage::Output,
                index: 3,
                rule: "pii".into(),
                name: Some("no 'pii' ü".into()),
                action: GuardAction::Redact,
                detail: "2 email".into(),
            }],
            citations: vec![Citation {
                index: 0,
                file_id: "file_0123456789abcdef0123456789abcdef".into(),
                filename: "rapport d'été \"v2\".pdf".into(),
                position: 41,
                score: 3.25,
            }],
            retrieval_ms: Some(17),
        },
        ..msg(&conv, "msg_assistant", 0)
    };
    let extremes = Message {
        role: Role::System,
        usage: Some(TokenUsage {
            prompt_tokens: 0,
            completion_tokens: u32::try_from(i32::MAX).unwrap(),
            total_tokens: u32::try_from(i32::MAX).unwrap(),
        }),
        latency_ms: Some(u64::try_from(i64::MAX).unwrap()),
        agent_version: Some(0),
        created_at: now,
        ..msg(&conv, "msg_extremes", 0)
    };
    let sent = vec![user, assistant, extremes];
    store.append_messages(&sent).await.unwrap();
    let got = store.last_messages("conv_1", 10).await.unwrap();
    assert_eq!(got, sent);
    assert_eq!(
        got[0].created_at.timestamp_subsec_micros(),
        sent[0].created_at.timestamp_subsec_micros()
    );
    let query = MessageQuery {
        agent_id: agent,
        session_key: Some("s".into()),
        before: None,
        limit: 10,
    };
    assert_eq!(store.query_messages(&query).await.unwrap(), sent);
    let conv = store.get_conversation("conv_1").await.unwrap();
    assert_eq!((conv.message_count, conv.updated_at), (3, now));
}

/// An assistant turn that calls two tools, the tools' answers and a plain final answer.
fn tool_turn(conv: &Conversation, prefix: &str, from: i64) -> Vec<Message> {
    let calls = vec![
        ToolCall {
            id: format!("call_{prefix}_1"),
            name: "get_weather".into(),
            arguments: "{\"city\": \"Zürich \\\"Altstadt\\\"\",\n \"note\": \"it's \u{1F327}\"}"
                .into(),
        },
        ToolCall {
            id: format!("call_{prefix}_2"),
            name: "lookup".into(),
            // The model's text, kept as written even when it is not JSON.
            arguments: "'single' \"double\" \\ back\r\n\tnot json: {".into(),
        },
    ];
    let assistant = Message {
        role: Role::Assistant,
        content: String::new(),
        tool_calls: calls.clone(),
        usage: Some(TokenUsage::new(10, 5)),
        model: Some(ModelRef {
            provider_id: ProviderId::parse("openai").unwrap(),
            model_name: "gpt-4o".into(),
        }),
        ..msg(conv, &format!("{prefix}_calls"), from)
    };
    let answers = calls.iter().enumerate().map(|(i, call)| Message {
        role: Role::Tool,
        content: format!("result of {} — \"ok\"\n", call.name),
        tool_call_id: Some(call.id.clone()),
        ..msg(
            conv,
            &format!("{prefix}_tool_{i}"),
            from + 1 + i64::try_from(i).unwrap(),
        )
    });
    let done = Message {
        role: Role::Assistant,
        content: "It rains.".into(),
        ..msg(conv, &format!("{prefix}_done"), from + 10)
    };
    std::iter::once(assistant)
        .chain(answers)
        .chain(std::iter::once(done))
        .collect()
}

async fn tool_calls_and_answers_round_trip_exactly(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Caller").await;

    // Through start_conversation, then append_messages.
    let question = msg(&unsaved("conv_t", &agent, "t", 0, t0()), "q1", 0);
    let first: Vec<Message> = std::iter::once(question)
        .chain(tool_turn(&unsaved("conv_t", &agent, "t", 0, t0()), "a", 1))
        .collect();
    let last_at = first.last().unwrap().created_at;
    let conv = unsaved("conv_t", &agent, "t", 5, last_at);
    store.start_conversation(&conv, &first).await.unwrap();
    let second = tool_turn(&conv, "b", 100);
    store.append_messages(&second).await.unwrap();
    let sent: Vec<Message> = first.iter().chain(&second).cloned().collect();

    let got = store.last_messages("conv_t", 100).await.unwrap();
    assert_eq!(got, sent);
    let calls = &got[1];
    assert_eq!(calls.tool_calls.len(), 2);
    assert_eq!(calls.tool_call_id, None);
    assert_eq!(
        got.iter()
            .filter_map(|m| m.tool_call_id.as_deref())
            .collect::<Vec<_>>(),
        ["call_a_1", "call_a_2", "call_b_1", "call_b_2"]
    );
    // Messages without calls read back with none.
    assert!(got[0].tool_calls.is_empty() && got[0].tool_call_id.is_none());
    assert!(got[4].tool_calls.is_empty() && got[4].tool_call_id.is_none());

    let query = MessageQuery {
        agent_id: agent,
        session_key: Some("t".into()),
        before: None,
        limit: 100,
    };
    assert_eq!(store.query_messages(&query).await.unwrap(), sent);
    // The newest few, still oldest first.
    assert_eq!(
        store.last_messages("conv_t", 3).await.unwrap(),
        sent[sent.len() - 3..].to_vec()
    );
}

async fn message_numbers_out_of_range_are_rejected(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Huge").await;
    let conv = open_new(&db, "conv_1", &agent, "s").await;
    let too_many_tokens = Message {
        usage: Some(TokenUsage::new(u32::MAX, 1)),
        ..msg(&conv, "m1", 1)
    };
    let too_slow = Message {
        latency_ms: Some(u64::MAX),
        ..msg(&conv, "m2", 2)
    };
    for bad in [too_many_tokens, too_slow] {
        let err = store
            .append_messages(&[msg(&conv, "ok", 0), bad])
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Internal(_) | Error::Invalid(_)),
            "{err:?}"
        );
    }
    assert!(store.last_messages("conv_1", 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .get_conversation("conv_1")
            .await
            .unwrap()
            .message_count,
        0
    );
}

async fn query_messages_by_agent_session_before_and_limit(db: Database) {
    let store = db.conversations();
    let a = seed_agent(&db, "A").await;
    let b = seed_agent(&db, "B").await;
    let a1 = open_new(&db, "conv_a1", &a, "s1").await;
    let a2 = open_new(&db, "conv_a2", &a, "s2").await;
    let b1 = open_new(&db, "conv_b1", &b, "s1").await;
    store
        .append_messages(&[
            msg(&a1, "a1-1", 10),
            msg(&a1, "a1-2", 30),
            msg(&a1, "a1-3", 50),
        ])
        .await
        .unwrap();
    store
        .append_messages(&[msg(&a2, "a2-1", 20), msg(&a2, "a2-2", 40)])
        .await
        .unwrap();
    store
        .append_messages(&[msg(&b1, "b1-1", 25)])
        .await
        .unwrap();
    let query = |session_key: Option<&str>, before: Option<i64>, limit: u32| MessageQuery {
        agent_id: a.clone(),
        session_key: session_key.map(str::to_owned),
        before: before.map(|m| t0() + TimeDelta::microseconds(m)),
        limit,
    };
    let run = |q: MessageQuery| {
        let store = db.conversations();
        async move { ids(&store.query_messages(&q).await.unwrap()).join(" ") }
    };
    assert_eq!(
        run(query(None, None, 100)).await,
        "a1-1 a2-1 a1-2 a2-2 a1-3"
    );
    assert_eq!(run(query(None, None, 2)).await, "a2-2 a1-3");
    assert_eq!(run(query(Some("s1"), None, 100)).await, "a1-1 a1-2 a1-3");
    assert_eq!(run(query(Some("s2"), None, 1)).await, "a2-2");
    // Strictly before: the message at exactly 40 is left out.
    assert_eq!(run(query(None, Some(40), 100)).await, "a1-1 a2-1 a1-2");
    assert_eq!(run(query(None, Some(40), 2)).await, "a2-1 a1-2");
    assert_eq!(run(query(Some("s1"), Some(31), 100)).await, "a1-1 a1-2");
    assert_eq!(run(query(Some("s1"), Some(10), 100)).await, "");
    assert_eq!(run(query(Some("nope"), None, 100)).await, "");
    assert_eq!(run(query(None, None, 0)).await, "");
    let of_b = MessageQuery {
        agent_id: b.clone(),
        ..query(Some("s1"), None, 100)
    };
    assert_eq!(run(of_b).await, "b1-1");
}

async fn list_conversations_order_pagination_and_filter(db: Database) {
    let store = db.conversations();
    let a = seed_agent(&db, "A").await;
    let b = seed_agent(&db, "B").await;
    // Updated (by their last message) at: c1 → 30, c2 → 10, c3 → 30 (larger id), c4 → never
    // (t0), c5 of b → 20.
    let c1 = open_new(&db, "conv_c1", &a, "k1").await;
    let c2 = open_new(&db, "conv_c2", &a, "k2").await;
    let c3 = open_new(&db, "conv_c3", &a, "k3").await;
    open_new(&db, "conv_c4", &a, "k4").await;
    let c5 = open_new(&db, "conv_c5", &b, "k5").await;
    for (conv, micros) in [(&c1, 30), (&c2, 10), (&c3, 30), (&c5, 20)] {
        store
            .append_messages(&[msg(conv, &format!("m-{}", conv.id), micros)])
            .await
            .unwrap();
    }
    let listed_ids = |p: &agentry_domain::page::Paged<Conversation>| {
        p.items.iter().map(|c| c.id.clone()).collect::<Vec<_>>()
    };
    let all = store.list_conversations(None, page(100, 0)).await.unwrap();
    assert_eq!(
        listed_ids(&all),
        ["conv_c3", "conv_c1", "conv_c5", "conv_c2", "conv_c4"]
    );
    assert_eq!(all.total, 5);
    assert_eq!(all.items[1].message_count, 1);
    let of_a = store
        .list_conversations(Some(std::slice::from_ref(&a)), page(2, 0))
        .await
        .unwrap();
    assert_eq!(
        (listed_ids(&of_a), of_a.total, of_a.page),
        (
            vec!["conv_c3".to_owned(), "conv_c1".to_owned()],
            4,
            page(2, 0)
        )
    );
    let rest = store
        .list_conversations(Some(std::slice::from_ref(&a)), page(2, 2))
        .await
        .unwrap();
    assert_eq!(listed_ids(&rest), ["conv_c2", "conv_c4"]);
    let beyond = store
        .list_conversations(Some(std::slice::from_ref(&a)), page(2, 9))
        .await
        .unwrap();
    assert_eq!((beyond.items.len(), beyond.total), (0, 4));
    let of_b = store
        .list_conversations(Some(std::slice::from_ref(&b)), page(10, 0))
        .await
        .unwrap();
    assert_eq!(
        (listed_ids(&of_b), of_b.total),
        (vec!["conv_c5".to_owned()], 1)
    );
    let nobody = store
        .list_conversations(Some(&[AgentId::generate()]), page(10, 0))
        .await
        .unwrap();
    assert_eq!((nobody.items.len(), nobody.total), (0, 0));
    let both = store
        .list_conversations(Some(&[b.clone(), a.clone()]), page(100, 0))
        .await
        .unwrap();
    assert_eq!(both.total, 5, "several agents: the conversations of each");
    let none = store
        .list_conversations(Some(&[]), page(10, 0))
        .await
        .unwrap();
    assert_eq!((none.items.len(), none.total), (0, 0), "no agents: nothing");
}

async fn delete_conversation_cascades_messages(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "Forgetful").await;
    let conv = open_new(&db, "conv_1", &agent, "s").await;
    let kept = open_new(&db, "conv_2", &agent, "t").await;
    store
        .append_messages(&[msg(&conv, "m1", 1), msg(&conv, "m2", 2)])
        .await
        .unwrap();
    store.append_messages(&[msg(&kept, "k1", 3)]).await.unwrap();
    assert!(store.delete_conversation("conv_1").await.unwrap());
    assert!(!store.delete_conversation("conv_1").await.unwrap());
    assert!(matches!(
        store.get_conversation("conv_1").await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.last_messages("conv_1", 10).await.unwrap().is_empty());
    let query = MessageQuery {
        agent_id: agent.clone(),
        session_key: None,
        before: None,
        limit: 10,
    };
    assert_eq!(ids(&store.query_messages(&query).await.unwrap()), ["k1"]);
    // The key is free again, and the old message ids too.
    let reopened = open_new(&db, "conv_3", &agent, "s").await;
    store
        .append_messages(&[msg(&reopened, "m1", 4)])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_conversation("conv_3")
            .await
            .unwrap()
            .message_count,
        1
    );
}

async fn deleting_the_agent_cascades_conversations_and_messages(db: Database) {
    let store = db.conversations();
    let doomed = seed_agent(&db, "Doomed").await;
    let survivor = seed_agent(&db, "Survivor").await;
    let conv = open_new(&db, "conv_1", &doomed, "s").await;
    let other = open_new(&db, "conv_2", &survivor, "s").await;
    store.append_messages(&[msg(&conv, "m1", 1)]).await.unwrap();
    store
        .append_messages(&[msg(&other, "o1", 2)])
        .await
        .unwrap();
    assert!(db.agents().delete_agent(&doomed).await.unwrap());
    assert!(matches!(
        store.get_conversation("conv_1").await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.last_messages("conv_1", 10).await.unwrap().is_empty());
    let query = MessageQuery {
        agent_id: doomed.clone(),
        session_key: None,
        before: None,
        limit: 10,
    };
    assert!(store.query_messages(&query).await.unwrap().is_empty());
    let listed = store.list_conversations(None, page(10, 0)).await.unwrap();
    assert_eq!(
        (listed.total, listed.items),
        (1, vec![store.get_conversation("conv_2").await.unwrap()])
    );
    assert_eq!(
        ids(&store.last_messages("conv_2", 10).await.unwrap()),
        ["o1"]
    );
}

// ---------------------------------------------------------------------------------------
// Runs

/// A succeeded run `id`, `secs` seconds after `t0`, with `log_meta` from a JSON object.
fn run(id: &str, secs: i64, meta: Value) -> Run {
    let Value::Object(log_meta) = meta else {
        panic!("log_meta must be an object")
    };
    Run {
        id: id.to_owned(),
        preamble: "You are terse.".into(),
        prompt: "Say hi".into(),
        model: ModelRef {
            provider_id: ProviderId::parse("mock").unwrap(),
            model_name: "echo".into(),
        },
        response: Some("hi".into()),
        usage: Some(TokenUsage::new(3, 1)),
        latency_ms: 42,
        status: RunStatus::Succeeded,
        error: None,
        log_meta,
        created_at: t0() + TimeDelta::seconds(secs),
    }
}

async fn run_fields_round_trip_exactly(db: Database) {
    let store = db.runs();
    let now = Utc::now().trunc_subsecs(6);
    let succeeded = Run {
        preamble: "Ünïcode \u{1F916}\n'quotes' \"double\" \\".into(),
        created_at: now,
        ..run(
            "eval_123e4567-e89b-12d3-a456-426614174000",
            0,
            json!({
                "user_id": "u-1",
                "session_id": "s-1",
                "component": "eval",
                "nested": {"list": [1, "two", null, true, {"deep": 1.5}], "empty": {}},
                "number": 12_345_678_901_i64,
            }),
        )
    };
    let failed = Run {
        response: None,
        usage: None,
        latency_ms: u64::try_from(i64::MAX).unwrap(),
        status: RunStatus::Failed,
        error: Some("the provider answered 500: boom".into()),
        preamble: String::new(),
        created_at: now - TimeDelta::microseconds(1),
        ..run("run_failed", 0, json!({}))
    };
    for r in [&succeeded, &failed] {
        store.insert_run(r).await.unwrap();
        assert_eq!(&store.get_run(&r.id).await.unwrap(), r);
    }
    let listed = store
        .list_runs(&RunFilter::default(), page(10, 0))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![succeeded, failed]);
    let too_slow = Run {
        latency_ms: u64::MAX,
        ..run("run_slow", 0, json!({}))
    };
    let err = store.insert_run(&too_slow).await.unwrap_err();
    assert!(
        matches!(err, Error::Internal(_) | Error::Invalid(_)),
        "{err:?}"
    );
    assert!(store.get_run("run_slow").await.is_err());
}

async fn duplicate_run_id_is_a_conflict_on_run_id(db: Database) {
    let store = db.runs();
    let first = run("run_dup", 0, json!({"user_id": "first"}));
    store.insert_run(&first).await.unwrap();
    let second = Run {
        prompt: "again".into(),
        ..run("run_dup", 1, json!({"user_id": "second"}))
    };
    let err = store.insert_run(&second).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("run_id"));
    assert!(err.to_string().contains("run_dup"), "{err}");
    assert_eq!(store.get_run("run_dup").await.unwrap(), first);
}

/// Runs stored concurrently share group commits, each one stored when its caller is told;
/// one whose id is taken fails alone, with its conflict, and the others of its batch stay.
async fn concurrent_runs_share_commits_and_a_taken_id_fails_alone(db: Database) {
    let store = db.runs();
    store
        .insert_run(&run("run_taken", 0, json!({})))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = db.runs();
            tokio::spawn(async move {
                let id = if i == 7 {
                    "run_taken".to_owned()
                } else {
                    format!("run_{i}")
                };
                let stored = store.insert_run(&run(&id, i, json!({}))).await;
                (i, stored)
            })
        })
        .collect();
    for task in tasks {
        let (i, stored) = task.await.unwrap();
        if i == 7 {
            let err = stored.unwrap_err();
            assert_eq!(conflict_field(&err), Some("run_id"), "{err:?}");
        } else {
            stored.unwrap();
            assert_eq!(
                store.get_run(&format!("run_{i}")).await.unwrap().id,
                format!("run_{i}")
            );
        }
    }
    let all = store
        .list_runs(&RunFilter::default(), page(100, 0))
        .await
        .unwrap();
    assert_eq!(all.total, 24);
}

async fn list_runs_filters_paginates_and_orders(db: Database) {
    let store = db.runs();
    // `r3a` and `r3b` share a time: the larger id comes first.
    let spec = [
        (
            "r1",
            1,
            json!({"user_id": "alice", "session_id": "s1", "component": "eval"}),
        ),
        (
            "r2",
            2,
            json!({"user_id": "bob", "session_id": "s1", "component": "chat"}),
        ),
        (
            "r3b",
            3,
            json!({"user_id": "alice", "session_id": "s2", "component": "eval"}),
        ),
        (
            "r3a",
            3,
            json!({"user_id": "alice", "session_id": "s2", "component": "chat"}),
        ),
        ("r4", 4, json!({"other": "x"})),
        // Not strings: not matched by the filters.
        ("r5", 5, json!({"user_id": 7, "component": ["eval"]})),
    ];
    for (id, secs, meta) in spec {
        store.insert_run(&run(id, secs, meta)).await.unwrap();
    }
    let list = |user: Option<&str>, session: Option<&str>, component: Option<&str>, p: Page| {
        let filter = RunFilter {
            user_id: user.map(str::to_owned),
            session_id: session.map(str::to_owned),
            component: component.map(str::to_owned),
        };
        let store = db.runs();
        async move {
            let listed = store.list_runs(&filter, p).await.unwrap();
            let ids: Vec<String> = listed.items.iter().map(|r| r.id.clone()).collect();
            (ids.join(" "), listed.total)
        }
    };
    let all = page(100, 0);
    assert_eq!(
        list(None, None, None, all).await,
        ("r5 r4 r3b r3a r2 r1".into(), 6)
    );
    assert_eq!(
        list(None, None, None, page(2, 0)).await,
        ("r5 r4".into(), 6)
    );
    assert_eq!(
        list(None, None, None, page(2, 2)).await,
        ("r3b r3a".into(), 6)
    );
    assert_eq!(list(None, None, None, page(2, 6)).await, (String::new(), 6));
    assert_eq!(
        list(Some("alice"), None, None, all).await,
        ("r3b r3a r1".into(), 3)
    );
    assert_eq!(list(None, Some("s1"), None, all).await, ("r2 r1".into(), 2));
    assert_eq!(
        list(None, None, Some("eval"), all).await,
        ("r3b r1".into(), 2)
    );
    assert_eq!(
        list(Some("alice"), Some("s2"), None, all).await,
        ("r3b r3a".into(), 2)
    );
    assert_eq!(
        list(Some("alice"), Some("s2"), Some("chat"), all).await,
        ("r3a".into(), 1)
    );
    assert_eq!(
        list(Some("alice"), None, Some("eval"), page(1, 1)).await,
        ("r1".into(), 2)
    );
    assert_eq!(
        list(Some("bob"), Some("s2"), None, all).await,
        (String::new(), 0)
    );
    assert_eq!(list(Some("7"), None, None, all).await, (String::new(), 0));
}

async fn logged_runs_are_all_stored_by_flush(db: Database) {
    let store = db.runs();
    // Runs with and without the optional fields, written by the log in multi-row inserts.
    let logged = |i: i64| {
        let full = run(
            &format!("run_log_{i:03}"),
            i,
            json!({"component": "gateway"}),
        );
        if i % 3 == 0 {
            Run {
                response: None,
                usage: None,
                status: RunStatus::Failed,
                error: Some(format!("failure {i}")),
                ..full
            }
        } else {
            full
        }
    };
    for i in 0..300 {
        store.log_run(&logged(i)).await.unwrap();
    }
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.flush())
        .await
        .unwrap();
    let all = store
        .list_runs(&RunFilter::default(), page(1, 0))
        .await
        .unwrap();
    assert_eq!(
        all.total, 300,
        "every queued run is stored once the log is flushed"
    );
    for i in [0, 1, 2, 99, 299] {
        let stored = store.get_run(&format!("run_log_{i:03}")).await.unwrap();
        assert_eq!(stored, logged(i), "run {i} is stored as logged");
    }
    store
        .log_run(&run("run_after_close", 301, json!({})))
        .await
        .unwrap();
    assert_eq!(
        store.get_run("run_after_close").await.unwrap().id,
        "run_after_close",
        "after closing, runs are stored synchronously"
    );
}

/// A batch whose multi-row insert fails (here: an id already stored) is retried run by run,
/// so only the bad run is lost.
async fn a_bad_run_in_a_logged_batch_loses_only_itself(db: Database) {
    let store = db.runs();
    store
        .insert_run(&run("run_taken", 0, json!({})))
        .await
        .unwrap();
    for i in 1..=40 {
        let id = if i == 20 {
            "run_taken".to_owned()
        } else {
            format!("run_batch_{i:02}")
        };
        store.log_run(&run(&id, i, json!({}))).await.unwrap();
    }
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.flush())
        .await
        .unwrap();
    let all = store
        .list_runs(&RunFilter::default(), page(1, 0))
        .await
        .unwrap();
    assert_eq!(all.total, 40, "the 39 good runs and the one stored before");
    assert_eq!(
        store.get_run("run_taken").await.unwrap().created_at,
        t0(),
        "the stored run is not overwritten"
    );
}

async fn get_missing_run_is_not_found(db: Database) {
    let err = db.runs().get_run("run_missing").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "run", id } if id == "run_missing"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Versions

/// Publishes `agent` with `note` at `t0` + `secs` seconds.
async fn publish(db: &Database, agent: &Agent, note: Option<&str>, secs: i64) -> AgentVersion {
    db.versions()
        .publish_version(
            agent,
            note,
            Some("alice"),
            t0() + TimeDelta::seconds(secs),
            false,
        )
        .await
        .unwrap()
}

fn numbers(versions: &[AgentVersion]) -> Vec<u32> {
    versions.iter().map(|v| v.version).collect()
}

async fn publish_numbers_versions_from_one(db: Database) {
    let a = agent("Numbered");
    db.agents().insert_agent(&a).await.unwrap();
    for n in 1..=3 {
        let v = publish(&db, &a, Some(&format!("release {n}")), n.into()).await;
        assert_eq!(v.version, n);
        assert_eq!(v.agent_id, a.id);
        assert_eq!(v.snapshot, a);
        assert_eq!(v.note.as_deref(), Some(format!("release {n}").as_str()));
        assert_eq!(v.created_by.as_deref(), Some("alice"));
        assert_eq!(v.created_at, t0() + TimeDelta::seconds(n.into()));
        assert_eq!(db.versions().get_version(&a.id, n).await.unwrap(), v);
    }
}

async fn version_snapshot_round_trips_exactly(db: Database) {
    let a = full_agent("Snapshotted");
    db.agents().insert_agent(&a).await.unwrap();
    let at = Utc::now().trunc_subsecs(6) - TimeDelta::microseconds(1);
    let published = db
        .versions()
        .publish_version(&a, Some("ünïcode \u{1F600}\n'quoted'"), None, at, false)
        .await
        .unwrap();
    let got = db.versions().get_version(&a.id, 1).await.unwrap();
    assert_eq!(got, published);
    assert_eq!(got.snapshot, a);
    assert_eq!(got.created_at, at);
    assert_eq!(got.created_by, None);
    assert_eq!(
        got.snapshot.created_at.timestamp_subsec_micros(),
        a.created_at.timestamp_subsec_micros()
    );
    assert_eq!(
        got.snapshot.temperature.map(|t| t.get().to_bits()),
        a.temperature.map(|t| t.get().to_bits())
    );
    assert_eq!(
        got.snapshot.top_p.map(|t| t.get().to_bits()),
        Some((1.0_f64 / 3.0).to_bits())
    );
    // Floats that need all 17 digits, and nanoseconds the database columns would not keep.
    let odd = Agent {
        temperature: Some(Temperature::parse(1.999_999_999_999_999_8).unwrap()),
        top_p: Some(TopP::parse(0.123_456_789_012_345_68).unwrap()),
        updated_at: a.updated_at + TimeDelta::nanoseconds(789),
        ..a.clone()
    };
    let v2 = publish(&db, &odd, None, 1).await;
    assert_eq!(v2.snapshot, odd);
    assert_eq!(
        db.versions().get_version(&a.id, 2).await.unwrap().snapshot,
        odd
    );
}

async fn bare_snapshot_round_trips(db: Database) {
    let a = agent("Bare Snapshot");
    db.agents().insert_agent(&a).await.unwrap();
    let v = db
        .versions()
        .publish_version(&a, None, None, t0(), false)
        .await
        .unwrap();
    assert_eq!((v.note.clone(), v.created_by.clone()), (None, None));
    let got = db.versions().get_version(&a.id, 1).await.unwrap();
    assert_eq!(got, v);
    assert_eq!(got.snapshot, a);
}

async fn concurrent_publishes_get_distinct_numbers(db: Database) {
    let a = agent("Contended");
    db.agents().insert_agent(&a).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, a) = (db.versions(), a.clone());
            tokio::spawn(async move {
                let note = format!("task {i}");
                store
                    .publish_version(&a, Some(&note), None, t0(), false)
                    .await
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap().unwrap().version);
    }
    got.sort_unstable();
    assert_eq!(got, (1..=8).collect::<Vec<u32>>());
    let listed = db
        .versions()
        .list_versions(&a.id, page(100, 0))
        .await
        .unwrap();
    assert_eq!(listed.total, 8);
    assert_eq!(numbers(&listed.items), (1..=8).rev().collect::<Vec<u32>>());
}

async fn publish_for_a_missing_agent_is_not_found(db: Database) {
    let ghost = agent("Ghost");
    let err = db
        .versions()
        .publish_version(&ghost, None, None, t0(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "agent", id } if *id == ghost.id.to_string()),
        "{err:?}"
    );
    assert!(
        db.versions()
            .latest_version(&ghost.id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn drafts_take_numbers_but_are_never_the_latest(db: Database) {
    let store = db.versions();
    let a = agent("Drafted");
    db.agents().insert_agent(&a).await.unwrap();
    let draft_only = store
        .publish_version(&a, Some("proposal"), None, t0(), true)
        .await
        .unwrap();
    assert_eq!((draft_only.version, draft_only.draft), (1, true));
    assert!(store.latest_version(&a.id).await.unwrap().is_none());
    let published = publish(&db, &a, None, 1).await;
    assert_eq!((published.version, published.draft), (2, false));
    let draft = store
        .publish_version(&a, None, None, t0(), true)
        .await
        .unwrap();
    assert_eq!(draft.version, 3);
    assert_eq!(store.latest_version(&a.id).await.unwrap(), Some(published));
    assert_eq!(store.get_version(&a.id, 3).await.unwrap(), draft);
    let listed = store.list_versions(&a.id, page(10, 0)).await.unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|v| (v.version, v.draft))
            .collect::<Vec<_>>(),
        [(3, true), (2, false), (1, true)]
    );
}

async fn get_latest_and_list_versions(db: Database) {
    let store = db.versions();
    let a = agent("Listed");
    db.agents().insert_agent(&a).await.unwrap();
    assert!(store.latest_version(&a.id).await.unwrap().is_none());
    let empty = store.list_versions(&a.id, page(10, 0)).await.unwrap();
    assert_eq!((empty.total, empty.items.len()), (0, 0));
    assert!(matches!(
        store.get_version(&a.id, 1).await,
        Err(Error::NotFound {
            entity: "version",
            ..
        })
    ));
    let mut published = Vec::new();
    for n in 1..=5 {
        let changed = Agent {
            instructions: format!("v{n}"),
            ..a.clone()
        };
        published.push(publish(&db, &changed, None, n).await);
    }
    assert_eq!(
        store.latest_version(&a.id).await.unwrap().as_ref(),
        published.last()
    );
    assert_eq!(store.get_version(&a.id, 2).await.unwrap(), published[1]);
    assert_eq!(
        store
            .get_version(&a.id, 2)
            .await
            .unwrap()
            .snapshot
            .instructions,
        "v2"
    );
    for missing in [0, 6, u32::MAX] {
        assert!(
            matches!(
                store.get_version(&a.id, missing).await,
                Err(Error::NotFound {
                    entity: "version",
                    ..
                })
            ),
            "{missing}"
        );
    }
    let first = store.list_versions(&a.id, page(2, 0)).await.unwrap();
    assert_eq!(first.total, 5);
    assert_eq!(first.page, page(2, 0));
    assert_eq!(
        first.items,
        vec![published[4].clone(), published[3].clone()]
    );
    let last = store.list_versions(&a.id, page(2, 4)).await.unwrap();
    assert_eq!((last.total, numbers(&last.items)), (5, vec![1]));
    let past = store.list_versions(&a.id, page(2, 10)).await.unwrap();
    assert_eq!((past.total, past.items.len()), (5, 0));
}

async fn versions_are_per_agent(db: Database) {
    let (a, b) = (agent("First Agent"), agent("Second Agent"));
    db.agents().insert_agent(&a).await.unwrap();
    db.agents().insert_agent(&b).await.unwrap();
    publish(&db, &a, None, 1).await;
    publish(&db, &a, None, 2).await;
    let vb = publish(&db, &b, None, 3).await;
    assert_eq!((vb.version, vb.agent_id.clone()), (1, b.id.clone()));
    assert_eq!(db.versions().latest_version(&b.id).await.unwrap(), Some(vb));
    let listed = db
        .versions()
        .list_versions(&a.id, page(10, 0))
        .await
        .unwrap();
    assert_eq!((listed.total, numbers(&listed.items)), (2, vec![2, 1]));
    assert!(listed.items.iter().all(|v| v.snapshot == a));
}

async fn deleting_the_agent_cascades_versions(db: Database) {
    let (doomed, survivor) = (agent("Doomed Versions"), agent("Surviving Versions"));
    db.agents().insert_agent(&doomed).await.unwrap();
    db.agents().insert_agent(&survivor).await.unwrap();
    publish(&db, &doomed, None, 1).await;
    publish(&db, &doomed, None, 2).await;
    let kept = publish(&db, &survivor, None, 3).await;
    assert!(db.agents().delete_agent(&doomed.id).await.unwrap());
    let store = db.versions();
    assert!(store.latest_version(&doomed.id).await.unwrap().is_none());
    let listed = store.list_versions(&doomed.id, page(10, 0)).await.unwrap();
    assert_eq!((listed.total, listed.items.len()), (0, 0));
    assert!(matches!(
        store.get_version(&doomed.id, 1).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.get_version(&survivor.id, 1).await.unwrap(), kept);
    // Re-creating an agent with the same id starts numbering again.
    db.agents().insert_agent(&doomed).await.unwrap();
    assert_eq!(publish(&db, &doomed, None, 4).await.version, 1);
}

// ---------------------------------------------------------------------------------------
// Health and migrations

async fn ping_answers(db: Database) {
    db.health().ping().await.unwrap();
}

async fn migrations_are_idempotent(db: Database) {
    assert_eq!(db.migrate().unwrap(), Vec::<String>::new());
    assert_eq!(db.migrate().unwrap(), Vec::<String>::new());
    db.agents()
        .insert_agent(&agent("Still Works"))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Backend-specific

#[test]
fn unknown_url_schemes_are_rejected() {
    for url in [
        "mysql://root:hunter2@localhost/agentry",
        "agentry.db",
        "sqlite://",
        "file:agentry.db",
    ] {
        let err = Database::connect(url, options()).unwrap_err();
        assert!(
            matches!(err, StorageError::UnsupportedUrl(_)),
            "{url}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("sqlite://") && message.contains("postgres://"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[test]
fn pool_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_sqlite_url(dir.path());
    let zero = PoolOptions {
        max_connections: 0,
        ..options()
    };
    assert!(matches!(
        Database::connect(&url, zero),
        Err(StorageError::InvalidOptions(_))
    ));
    let instant = PoolOptions {
        connect_timeout: Duration::ZERO,
        ..options()
    };
    assert!(matches!(
        Database::connect(&url, instant),
        Err(StorageError::InvalidOptions(_))
    ));
}

#[tokio::test]
async fn sqlite_creates_the_directory_and_data_persists_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_sqlite_url(&dir.path().join("nested/deeper"));
    let a = full_agent("Persistent");
    {
        let db = Database::connect(&url, options()).unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        assert_eq!(db.migrate().unwrap(), MIGRATIONS);
        db.agents().insert_agent(&a).await.unwrap();
        db.providers()
            .insert_provider(&provider("kept"))
            .await
            .unwrap();
    }
    let db = Database::connect(&url, options()).unwrap();
    assert!(db.migrate().unwrap().is_empty());
    assert_eq!(
        db.agents()
            .get_agent(&AgentRef::Id(a.id.clone()))
            .await
            .unwrap(),
        a
    );
    assert_same_provider(
        &db.providers()
            .get_provider(&ProviderId::parse("kept").unwrap())
            .await
            .unwrap(),
        &provider("kept"),
    );
}

#[test]
fn sqlite_relative_urls_are_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let file = dir.path().join("relative.db");
    let relative = format!("{up}{}", file.display().to_string().trim_start_matches('/'));
    let db = Database::connect(&format!("sqlite://{relative}"), options()).unwrap();
    db.migrate().unwrap();
    assert!(file.exists(), "{relative}");
}

#[tokio::test]
async fn sqlite_write_lock_timeout_is_unavailable() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locked.db");
    let db = Database::connect(&format!("sqlite://{}", file.display()), options()).unwrap();
    db.migrate().unwrap();
    let mut locker = diesel::sqlite::SqliteConnection::establish(file.to_str().unwrap()).unwrap();
    locker.batch_execute("BEGIN IMMEDIATE").unwrap();
    // Waits for busy_timeout (5 s), then gives up.
    let err = db
        .agents()
        .insert_agent(&agent("Blocked"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    locker.batch_execute("ROLLBACK").unwrap();
    db.agents().insert_agent(&agent("Unblocked")).await.unwrap();
}

/// A commit leaves SQLite's log to the checkpoint thread: the database file takes the
/// committed pages although no commit came near the connections' automatic checkpoint (10,000
/// pages), and the pool's metrics count the checkpoint.
#[tokio::test]
async fn sqlite_checkpoints_the_log_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wal.db");
    let db = Database::connect(&format!("sqlite://{}", file.display()), options()).unwrap();
    db.migrate().unwrap();
    let metric = |name: &str| {
        db.pool_metrics()
            .collect()
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.number(&[]))
            .unwrap()
    };
    let checkpoints = || metric("agentry_db_wal_checkpoints_total");
    // The migrations do not nudge the thread: the schema is still only in the log.
    let before = std::fs::metadata(&file).unwrap().len();
    assert_eq!(checkpoints(), 0.0);
    let agent = seed_agent(&db, "Logged").await;
    let conv = unsaved("conv_w", &agent, "conv_w", 1, t0());
    db.conversations()
        .start_conversation(&conv, &[msg(&conv, "m1", 1)])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while checkpoints() < 1.0 || std::fs::metadata(&file).unwrap().len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 10 s: {} checkpoints, file {} bytes (was {before})",
            checkpoints(),
            std::fs::metadata(&file).unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric("agentry_db_wal_checkpoint_failures_total"), 0.0);
    // PostgreSQL has no such thread and reports none.
    if let Some((pg, _schema)) = postgres_db() {
        assert!(
            pg.pool_metrics()
                .collect()
                .iter()
                .all(|f| !f.name.starts_with("agentry_db_wal_"))
        );
    }
}

#[test]
fn unreachable_postgres_fails_to_connect() {
    let opts = PoolOptions {
        max_connections: 1,
        connect_timeout: Duration::from_millis(300),
    };
    let err = Database::connect("postgres://postgres@127.0.0.1:1/none", opts).unwrap_err();
    assert!(
        matches!(
            &err,
            StorageError::Connect {
                backend: "postgres",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn postgres_migrations_land_in_the_test_schema() {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    let Some((db, guard)) = postgres_db() else {
        return;
    };
    let mut admin = guard.admin_connection().unwrap();
    let count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = $1 \
         AND table_name IN ('__diesel_schema_migrations', 'agents', 'agent_tags', 'providers', \
         'conversations', 'messages', 'runs', 'agent_versions', 'users', 'auth_sessions', \
         'refresh_tokens', 'api_keys', 'server_secrets', 'change_counter')",
    )
    .bind::<Text, _>(guard.schema())
    .get_result::<Count>(&mut admin)
    .unwrap();
    assert_eq!(count.n, 14);
    drop(db);
}

/// Every migration's `down.sql` undoes its `up.sql`: revert them all, then apply them again.
/// (`EmbeddedMigrations` is neither `Clone` nor borrowed by the harness: `source` makes one
/// per use.)
fn revert_and_reapply<C>(conn: &mut C, source: fn() -> diesel_migrations::EmbeddedMigrations)
where
    C: diesel_migrations::MigrationHarness<C::Backend> + diesel::Connection,
    diesel_migrations::EmbeddedMigrations: diesel::migration::MigrationSource<C::Backend>,
{
    let applied = conn.run_pending_migrations(source()).unwrap();
    assert_eq!(applied.len(), MIGRATIONS.len());
    for expected in MIGRATIONS.iter().rev() {
        let reverted = conn.revert_last_migration(source()).unwrap();
        // The harness answers with the version: the name's digits before the `_`.
        let version: String = expected
            .chars()
            .take_while(|c| *c != '_')
            .filter(char::is_ascii_digit)
            .collect();
        assert_eq!(reverted.to_string(), version);
    }
    let again = conn.run_pending_migrations(source()).unwrap();
    assert_eq!(again.len(), MIGRATIONS.len());
}

#[test]
fn sqlite_migrations_revert_cleanly() {
    use diesel::Connection;

    const SOURCE: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("../../migrations/sqlite");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revert.db");
    let mut conn = diesel::sqlite::SqliteConnection::establish(file.to_str().unwrap()).unwrap();
    revert_and_reapply(&mut conn, || SOURCE);
}

#[test]
fn postgres_migrations_revert_cleanly() {
    use diesel::Connection;

    const SOURCE: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("../../migrations/postgres");
    let Some((url, _guard)) = fresh_postgres_url().unwrap() else {
        return;
    };
    let mut conn = diesel::pg::PgConnection::establish(&url).unwrap();
    revert_and_reapply(&mut conn, || SOURCE);
}

// Users, sessions, refresh tokens, API keys, server secrets

fn user(name: &str, role: UserRole, secs: i64) -> User {
    User {
        id: UserId::generate(),
        username: Username::parse(name).unwrap(),
        email: Some(Email::parse(&format!("{name}@example.com")).unwrap()),
        role,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${name}"),
        created_at: t0() + TimeDelta::seconds(secs),
        updated_at: t0() + TimeDelta::seconds(secs) + TimeDelta::microseconds(7),
    }
}

fn session(id: &str, user: &User) -> Session {
    Session {
        id: id.to_owned(),
        user_id: user.id.clone(),
        created_at: t0(),
        revoked_at: None,
    }
}

fn token(hash: &str, session: &str) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash.to_owned(),
        session_id: session.to_owned(),
        created_at: t0(),
        expires_at: t0() + TimeDelta::days(30),
        used_at: None,
    }
}

fn api_key(name: &str, creator: Option<&User>, secs: i64) -> ApiKey {
    ApiKey {
        id: ApiKeyId::generate(),
        name: name.to_owned(),
        prefix: "agk_abcdefgh".into(),
        secret_hash: format!("digest-of-{name}"),
        scopes: vec![Scope::Read, Scope::Invoke],
        agents: Some(vec!["support-bot".into(), "sales".into()]),
        rate_limit_per_minute: Some(30),
        created_by: creator.map(|u| u.id.clone()),
        expires_at: Some(t0() + TimeDelta::days(1)),
        last_used_at: None,
        revoked_at: None,
        created_at: t0() + TimeDelta::seconds(secs),
    }
}

async fn user_insert_get_find_and_list(db: Database) {
    let store = db.users();
    let a = user("alice", UserRole::Admin, 0);
    let mut b = user("bob", UserRole::Viewer, 1);
    b.email = None;
    store.insert_user(&b).await.unwrap();
    store.insert_user(&a).await.unwrap();
    assert!(store.get_user(&a.id).await.unwrap() == a);
    assert!(store.get_user(&b.id).await.unwrap() == b);
    let found = store
        .find_user_by_username(&Username::parse("bob").unwrap())
        .await
        .unwrap();
    assert!(found == Some(b.clone()));
    assert!(
        store
            .find_user_by_username(&Username::parse("nobody").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let listed = store.list_users(page(1, 0)).await.unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items.len(), 1);
    assert!(listed.items[0] == a, "oldest first");
    let second = store.list_users(page(1, 1)).await.unwrap();
    assert!(second.items[0] == b);
    let missing = store.get_user(&UserId::generate()).await.unwrap_err();
    assert!(
        matches!(missing, Error::NotFound { entity: "user", .. }),
        "{missing:?}"
    );
}

async fn duplicate_username_is_a_conflict_on_username(db: Database) {
    let store = db.users();
    store
        .insert_user(&user("carol", UserRole::Editor, 0))
        .await
        .unwrap();
    let err = store
        .insert_user(&user("carol", UserRole::Viewer, 1))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("username"));
    let dave = user("dave", UserRole::Viewer, 2);
    store.insert_user(&dave).await.unwrap();
    let mut renamed = dave.clone();
    renamed.username = Username::parse("carol").unwrap();
    let err = store.update_user(&renamed).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("username"));
    assert!(store.get_user(&dave.id).await.unwrap() == dave);
}

async fn user_update_and_missing_user(db: Database) {
    let store = db.users();
    let mut u = user("erin", UserRole::Viewer, 0);
    store.insert_user(&u).await.unwrap();
    u.role = UserRole::Editor;
    u.email = None;
    u.password_hash = "$argon2id$new".into();
    u.updated_at = t0() + TimeDelta::hours(1);
    store.update_user(&u).await.unwrap();
    assert!(store.get_user(&u.id).await.unwrap() == u);
    let ghost = user("ghost", UserRole::Viewer, 0);
    let err = store.update_user(&ghost).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(!store.delete_user(&ghost.id).await.unwrap());
}

async fn count_users_counts_admins(db: Database) {
    let store = db.users();
    assert_eq!(store.count_users().await.unwrap(), (0, 0));
    store
        .insert_user(&user("a1", UserRole::Admin, 0))
        .await
        .unwrap();
    store
        .insert_user(&user("a2", UserRole::Admin, 1))
        .await
        .unwrap();
    store
        .insert_user(&user("e1", UserRole::Editor, 2))
        .await
        .unwrap();
    assert_eq!(store.count_users().await.unwrap(), (3, 2));
}

async fn deleting_a_user_cascades_sessions_tokens_and_keys(db: Database) {
    let u = user("frank", UserRole::Editor, 0);
    let other = user("grace", UserRole::Editor, 1);
    db.users().insert_user(&u).await.unwrap();
    db.users().insert_user(&other).await.unwrap();
    db.sessions()
        .insert_session(&session("ses_f", &u), &token("h-f", "ses_f"))
        .await
        .unwrap();
    let key = api_key("frank's", Some(&u), 0);
    let kept = api_key("grace's", Some(&other), 1);
    db.api_keys().insert_api_key(&key).await.unwrap();
    db.api_keys().insert_api_key(&kept).await.unwrap();
    assert!(db.users().delete_user(&u.id).await.unwrap());
    assert!(!db.users().delete_user(&u.id).await.unwrap());
    assert!(matches!(
        db.sessions().get_session("ses_f").await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        db.sessions()
            .find_refresh_token("h-f")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        db.api_keys().get_api_key(&key.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(db.api_keys().get_api_key(&kept.id).await.unwrap() == kept);
}

async fn session_insert_get_and_revoke(db: Database) {
    let u = user("heidi", UserRole::Viewer, 0);
    db.users().insert_user(&u).await.unwrap();
    let s = session("ses_1", &u);
    let sessions = db.sessions();
    sessions
        .insert_session(&s, &token("h1", "ses_1"))
        .await
        .unwrap();
    assert_eq!(sessions.get_session("ses_1").await.unwrap(), s);
    let t = sessions.find_refresh_token("h1").await.unwrap().unwrap();
    assert!(t == token("h1", "ses_1"));
    let later = t0() + TimeDelta::minutes(5);
    assert!(sessions.revoke_session("ses_1", later).await.unwrap());
    assert_eq!(
        sessions.get_session("ses_1").await.unwrap().revoked_at,
        Some(later)
    );
    // Revoking again keeps the first time and still says it exists.
    assert!(
        sessions
            .revoke_session("ses_1", later + TimeDelta::minutes(1))
            .await
            .unwrap()
    );
    assert_eq!(
        sessions.get_session("ses_1").await.unwrap().revoked_at,
        Some(later)
    );
    assert!(!sessions.revoke_session("ses_none", later).await.unwrap());
    let err = sessions.get_session("ses_none").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn session_for_missing_user_is_not_found(db: Database) {
    let ghost = user("ghost", UserRole::Viewer, 0);
    let err = db
        .sessions()
        .insert_session(&session("ses_g", &ghost), &token("h-g", "ses_g"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { entity: "user", .. }),
        "{err:?}"
    );
    assert!(
        db.sessions()
            .find_refresh_token("h-g")
            .await
            .unwrap()
            .is_none()
    );
}

async fn refresh_token_is_consumed_once(db: Database) {
    let u = user("ivan", UserRole::Viewer, 0);
    db.users().insert_user(&u).await.unwrap();
    let sessions = db.sessions();
    sessions
        .insert_session(&session("ses_i", &u), &token("h-i1", "ses_i"))
        .await
        .unwrap();
    let at = t0() + TimeDelta::seconds(10);
    assert!(sessions.consume_refresh_token("h-i1", at).await.unwrap());
    assert!(!sessions.consume_refresh_token("h-i1", at).await.unwrap());
    assert!(
        !sessions
            .consume_refresh_token("h-unknown", at)
            .await
            .unwrap()
    );
    assert_eq!(
        sessions
            .find_refresh_token("h-i1")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(at)
    );
    sessions
        .insert_refresh_token(&token("h-i2", "ses_i"))
        .await
        .unwrap();
    assert!(sessions.consume_refresh_token("h-i2", at).await.unwrap());
}

async fn concurrent_consumption_has_one_winner(db: Database) {
    let u = user("judy", UserRole::Viewer, 0);
    db.users().insert_user(&u).await.unwrap();
    db.sessions()
        .insert_session(&session("ses_j", &u), &token("h-j", "ses_j"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.sessions();
            tokio::spawn(async move { store.consume_refresh_token("h-j", t0()).await })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

async fn refresh_token_for_missing_session_is_not_found(db: Database) {
    let err = db
        .sessions()
        .insert_refresh_token(&token("h-x", "ses_missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn revoke_user_sessions_revokes_only_theirs(db: Database) {
    let a = user("kim", UserRole::Viewer, 0);
    let b = user("lee", UserRole::Viewer, 1);
    db.users().insert_user(&a).await.unwrap();
    db.users().insert_user(&b).await.unwrap();
    let s = db.sessions();
    s.insert_session(&session("ses_a1", &a), &token("a1", "ses_a1"))
        .await
        .unwrap();
    s.insert_session(&session("ses_a2", &a), &token("a2", "ses_a2"))
        .await
        .unwrap();
    s.insert_session(&session("ses_b1", &b), &token("b1", "ses_b1"))
        .await
        .unwrap();
    s.revoke_session("ses_a2", t0()).await.unwrap();
    assert_eq!(s.revoke_user_sessions(&a.id, t0()).await.unwrap(), 1);
    assert!(s.get_session("ses_a1").await.unwrap().revoked_at.is_some());
    assert!(s.get_session("ses_b1").await.unwrap().revoked_at.is_none());
}

async fn purge_deletes_expired_tokens_and_dead_sessions(db: Database) {
    let u = user("pat", UserRole::Viewer, 0);
    db.users().insert_user(&u).await.unwrap();
    let s = db.sessions();
    let expired = |hash: &str, session: &str| RefreshTokenRecord {
        expires_at: t0() + TimeDelta::hours(1),
        ..token(hash, session)
    };
    // Live: a fresh token. Dead: only an expired token. Revoked long ago / just now.
    s.insert_session(&session("ses_live", &u), &token("live", "ses_live"))
        .await
        .unwrap();
    s.insert_session(&session("ses_dead", &u), &expired("dead", "ses_dead"))
        .await
        .unwrap();
    s.insert_session(&session("ses_old", &u), &token("old", "ses_old"))
        .await
        .unwrap();
    s.insert_session(&session("ses_new", &u), &token("new", "ses_new"))
        .await
        .unwrap();
    s.insert_refresh_token(&expired("live-expired", "ses_live"))
        .await
        .unwrap();
    s.revoke_session("ses_old", t0()).await.unwrap();
    s.revoke_session("ses_new", t0() + TimeDelta::days(2))
        .await
        .unwrap();
    let now = t0() + TimeDelta::days(2);
    let purged = s
        .purge_sessions(now, now - TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(purged, 2);
    for (id, kept) in [
        ("ses_live", true),
        ("ses_dead", false),
        ("ses_old", false),
        ("ses_new", true),
    ] {
        assert_eq!(s.get_session(id).await.is_ok(), kept, "{id}");
    }
    assert!(s.find_refresh_token("live").await.unwrap().is_some());
    assert!(
        s.find_refresh_token("live-expired")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_refresh_token("old").await.unwrap().is_none(),
        "cascaded"
    );
}

async fn api_key_round_trips_and_is_found_by_digest(db: Database) {
    let u = user("mallory", UserRole::Admin, 0);
    db.users().insert_user(&u).await.unwrap();
    let keys = db.api_keys();
    let full = api_key("full", Some(&u), 0);
    let bare = ApiKey {
        agents: None,
        rate_limit_per_minute: None,
        created_by: None,
        expires_at: None,
        scopes: vec![Scope::Admin],
        ..api_key("bare", None, 1)
    };
    keys.insert_api_key(&full).await.unwrap();
    keys.insert_api_key(&bare).await.unwrap();
    assert!(keys.get_api_key(&full.id).await.unwrap() == full);
    assert!(keys.get_api_key(&bare.id).await.unwrap() == bare);
    assert!(keys.find_api_key_by_hash("digest-of-full").await.unwrap() == Some(full.clone()));
    assert!(
        keys.find_api_key_by_hash("digest-of-none")
            .await
            .unwrap()
            .is_none()
    );
    let err = keys.get_api_key(&ApiKeyId::generate()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                entity: "api_key",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn api_key_list_revoke_and_touch(db: Database) {
    let a = user("nina", UserRole::Admin, 0);
    let b = user("oscar", UserRole::Admin, 1);
    db.users().insert_user(&a).await.unwrap();
    db.users().insert_user(&b).await.unwrap();
    let keys = db.api_keys();
    let k1 = api_key("k1", Some(&a), 0);
    let k2 = api_key("k2", Some(&b), 1);
    let k3 = api_key("k3", Some(&a), 2);
    for k in [&k1, &k2, &k3] {
        keys.insert_api_key(k).await.unwrap();
    }
    let all = keys.list_api_keys(None, page(10, 0)).await.unwrap();
    assert_eq!(all.total, 3);
    let names: Vec<&str> = all.items.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["k3", "k2", "k1"], "newest first");
    let of_a = keys.list_api_keys(Some(&a.id), page(1, 0)).await.unwrap();
    assert_eq!(of_a.total, 2);
    assert_eq!(of_a.items[0].name, "k3");

    let at = t0() + TimeDelta::minutes(1);
    assert!(keys.revoke_api_key(&k1.id, at).await.unwrap());
    assert!(
        !keys.revoke_api_key(&k1.id, at).await.unwrap(),
        "already revoked"
    );
    assert!(
        !keys
            .revoke_api_key(&ApiKeyId::generate(), at)
            .await
            .unwrap()
    );
    assert_eq!(keys.get_api_key(&k1.id).await.unwrap().revoked_at, Some(at));

    keys.touch_api_key(&k2.id, at, 60).await.unwrap();
    assert_eq!(
        keys.get_api_key(&k2.id).await.unwrap().last_used_at,
        Some(at)
    );
    // Within the interval: not written again.
    keys.touch_api_key(&k2.id, at + TimeDelta::seconds(30), 60)
        .await
        .unwrap();
    assert_eq!(
        keys.get_api_key(&k2.id).await.unwrap().last_used_at,
        Some(at)
    );
    let later = at + TimeDelta::seconds(61);
    keys.touch_api_key(&k2.id, later, 60).await.unwrap();
    assert_eq!(
        keys.get_api_key(&k2.id).await.unwrap().last_used_at,
        Some(later)
    );
}

async fn duplicate_api_key_digest_is_a_conflict(db: Database) {
    let keys = db.api_keys();
    keys.insert_api_key(&api_key("same", None, 0))
        .await
        .unwrap();
    let err = keys
        .insert_api_key(&api_key("same", None, 1))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("id"));
}

async fn change_counter_grows_with_every_change(db: Database) {
    let changes = db.changes();
    let start = changes.change_counter().await.unwrap();
    changes.record_change().await.unwrap();
    assert_eq!(changes.change_counter().await.unwrap(), start + 1);
    // Concurrent changes from several "replicas" are all counted.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let changes = db.changes();
            tokio::spawn(async move { changes.record_change().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(changes.change_counter().await.unwrap(), start + 9);
}

async fn server_secret_is_inserted_once(db: Database) {
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = db.server_secrets();
            tokio::spawn(async move {
                store
                    .get_or_insert_secret("jwt", SecretString::from(format!("candidate-{i}")))
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap().unwrap().expose_secret().to_owned());
    }
    assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
    let again = db
        .server_secrets()
        .get_or_insert_secret("jwt", SecretString::from("another"))
        .await
        .unwrap();
    assert_eq!(again.expose_secret(), seen[0]);
    let other = db
        .server_secrets()
        .get_or_insert_secret("other", SecretString::from("x"))
        .await
        .unwrap();
    assert_eq!(other.expose_secret(), "x");
}

async fn get_message_finds_one_by_id(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "A").await;
    let conv = open_new(&db, "conv_m", &agent, "k").await;
    let stored = msg(&conv, "msg_1", 5);
    store
        .append_messages(std::slice::from_ref(&stored))
        .await
        .unwrap();
    assert_eq!(store.get_message("msg_1").await.unwrap(), Some(stored));
    assert_eq!(store.get_message("msg_nope").await.unwrap(), None);
}

async fn append_if_stores_only_at_the_expected_count(db: Database) {
    let store = db.conversations();
    let agent = seed_agent(&db, "A").await;
    let conv = open_new(&db, "conv_if", &agent, "k").await;
    assert!(
        store
            .append_messages_if(&[msg(&conv, "m1", 1)], 0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .append_messages_if(&[msg(&conv, "m2", 2)], 0)
            .await
            .unwrap(),
        "another turn was stored since: nothing is"
    );
    assert_eq!(store.get_message("m2").await.unwrap(), None);
    assert_eq!(
        store
            .get_conversation("conv_if")
            .await
            .unwrap()
            .message_count,
        1
    );
    assert!(
        store
            .append_messages_if(&[msg(&conv, "m2", 2)], 1)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_conversation("conv_if")
            .await
            .unwrap()
            .message_count,
        2
    );
    let ghost = Conversation {
        id: "conv_ghost".into(),
        ..conv.clone()
    };
    let err = store
        .append_messages_if(&[msg(&ghost, "m3", 3)], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// MCP servers

fn strings(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A stdio MCP server with slug `slug`, created `secs` seconds after `t0`.
fn mcp_server(slug: &str, secs: i64) -> McpServer {
    McpServer {
        id: McpServerId::generate(),
        name: McpServerName::parse(&format!("Server {slug}")).unwrap(),
        slug: McpSlug::parse(slug).unwrap(),
        transport: McpTransport::stdio(
            "python",
            vec!["-m".into(), "my_mcp_server".into()],
            strings(&[("API_KEY", &format!("env-secret-{slug}"))]),
        )
        .unwrap(),
        status: McpStatus::Stopped,
        catalog: McpCatalog::default(),
        created_at: t0() + TimeDelta::seconds(secs),
        updated_at: t0() + TimeDelta::seconds(secs) + TimeDelta::microseconds(1),
    }
}

/// The transport as comparable text, secrets included (the domain type is not `PartialEq`).
fn transport_text(t: &McpTransport) -> String {
    match t {
        McpTransport::Stdio { command, args, env } => format!(
            "stdio {command} {args:?} {:?}",
            env.iter()
                .map(|(k, v)| (k.as_str(), v.expose_secret()))
                .collect::<Vec<_>>()
        ),
        McpTransport::Http { url, headers } => format!(
            "http {} {:?}",
            url.as_str(),
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose_secret()))
                .collect::<Vec<_>>()
        ),
    }
}

fn assert_same_mcp_server(a: &McpServer, b: &McpServer) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.name, b.name);
    assert_eq!(a.slug, b.slug);
    assert_eq!(transport_text(&a.transport), transport_text(&b.transport));
    assert_eq!(a.status, McpStatus::Stopped);
    assert_eq!(a.catalog, b.catalog);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}

async fn mcp_server_insert_and_get_by_id_and_slug(db: Database) {
    let store = db.mcp_servers();
    let s = mcp_server("file-ops", 0);
    store.insert_mcp_server(&s).await.unwrap();
    let by_id = store
        .get_mcp_server(&McpServerRef::Id(s.id.clone()))
        .await
        .unwrap();
    assert_same_mcp_server(&by_id, &s);
    let by_slug = store
        .get_mcp_server(&McpServerRef::Slug(s.slug.clone()))
        .await
        .unwrap();
    assert_same_mcp_server(&by_slug, &s);
    for missing in [
        McpServerRef::Slug(McpSlug::parse("nope").unwrap()),
        McpServerRef::Id(McpServerId::generate()),
    ] {
        let err = store.get_mcp_server(&missing).await.unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { entity: "mcp_server", id } if *id == missing.to_string()),
            "{err:?}"
        );
    }
}

async fn mcp_server_fields_round_trip_exactly(db: Database) {
    let store = db.mcp_servers();
    let now = Utc::now().trunc_subsecs(6);
    let stdio = McpServer {
        name: McpServerName::parse("Ünïcode 'quoted' \"server\" \u{1F600}").unwrap(),
        transport: McpTransport::stdio(
            "/usr/bin/env",
            vec![
                "node".into(),
                "a b".into(),
                "--json={\"x\": [1, null]}".into(),
                "line\nbreak".into(),
                String::new(),
            ],
            strings(&[("A", ""), ("B_2", "v\u{e9} \"q\" \\ \n"), ("_X", "x")]),
        )
        .unwrap(),
        catalog: McpCatalog {
            capabilities: vec!["tools".into(), "resources".into()],
            tools: vec![
                McpTool {
                    name: "get_current_time".into(),
                    description: Some("Ünïcode \"time\"".into()),
                    input_schema: json!({"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}),
                },
                McpTool {
                    name: "bare".into(),
                    description: None,
                    input_schema: json!({}),
                },
            ],
        },
        created_at: now - TimeDelta::microseconds(123_457),
        updated_at: now,
        ..mcp_server("odd", 0)
    };
    let remote = McpServer {
        transport: McpTransport::http(
            "https://mcp.example.com:8443/mcp/?tenant=a&x=%20",
            strings(&[("Authorization", "Bearer t\u{f6}ken"), ("X-Empty", "")]),
        )
        .unwrap(),
        ..mcp_server("remote", 1)
    };
    let bare = McpServer {
        transport: McpTransport::stdio("srv", Vec::new(), strings(&[])).unwrap(),
        ..mcp_server("bare", 2)
    };
    for s in [&stdio, &remote, &bare] {
        store.insert_mcp_server(s).await.unwrap();
        let got = store
            .get_mcp_server(&McpServerRef::Id(s.id.clone()))
            .await
            .unwrap();
        assert_same_mcp_server(&got, s);
    }
}

async fn mcp_server_catalog_is_stored_alone(db: Database) {
    let store = db.mcp_servers();
    let s = mcp_server("cat", 0);
    store.insert_mcp_server(&s).await.unwrap();
    let catalog = McpCatalog {
        capabilities: vec!["tools".into()],
        tools: vec![McpTool {
            name: "echo".into(),
            description: Some("says it back".into()),
            input_schema: json!({"type": "object"}),
        }],
    };
    assert!(store.set_mcp_catalog(&s.id, &catalog).await.unwrap());
    let got = store
        .get_mcp_server(&McpServerRef::Id(s.id.clone()))
        .await
        .unwrap();
    assert_same_mcp_server(
        &got,
        &McpServer {
            catalog: catalog.clone(),
            ..s.clone()
        },
    );
    assert!(
        !store
            .set_mcp_catalog(&McpServerId::generate(), &catalog)
            .await
            .unwrap(),
        "an absent server is reported, not created"
    );
}

async fn mcp_server_duplicate_slug_is_a_conflict_on_slug(db: Database) {
    let store = db.mcp_servers();
    let first = mcp_server("dup", 0);
    store.insert_mcp_server(&first).await.unwrap();
    let err = store
        .insert_mcp_server(&mcp_server("dup", 1))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("slug"));
    let same_id = McpServer {
        slug: McpSlug::parse("other").unwrap(),
        ..first.clone()
    };
    let err = store.insert_mcp_server(&same_id).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("id"));
    // A rename onto a taken slug changes nothing.
    let second = mcp_server("second", 2);
    store.insert_mcp_server(&second).await.unwrap();
    let renamed = McpServer {
        slug: first.slug.clone(),
        ..second.clone()
    };
    let err = store.update_mcp_server(&renamed).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("slug"));
    let kept = store
        .get_mcp_server(&McpServerRef::Id(second.id.clone()))
        .await
        .unwrap();
    assert_same_mcp_server(&kept, &second);
    assert_eq!(store.list_mcp_servers(page(10, 0)).await.unwrap().total, 2);
}

async fn mcp_server_list_is_newest_first_and_paginates(db: Database) {
    let store = db.mcp_servers();
    let empty = store.list_mcp_servers(page(10, 0)).await.unwrap();
    assert!(empty.items.is_empty() && empty.total == 0);
    for (slug, secs) in [("b", 1), ("a", 0), ("c", 2), ("d", 2)] {
        store
            .insert_mcp_server(&mcp_server(slug, secs))
            .await
            .unwrap();
    }
    let slugs = |p: &agentry_domain::page::Paged<McpServer>| -> Vec<String> {
        p.items.iter().map(|s| s.slug.to_string()).collect()
    };
    let all = store.list_mcp_servers(page(10, 0)).await.unwrap();
    assert_eq!(all.total, 4);
    // c and d share a creation time: the later id (d, created after c) comes first.
    assert_eq!(slugs(&all), ["d", "c", "b", "a"]);
    let second = store.list_mcp_servers(page(2, 2)).await.unwrap();
    assert_eq!(
        (slugs(&second), second.total),
        (vec!["b".into(), "a".into()], 4)
    );
    let past = store.list_mcp_servers(page(2, 10)).await.unwrap();
    assert!(past.items.is_empty() && past.total == 4);
}

async fn mcp_server_update_and_delete(db: Database) {
    let store = db.mcp_servers();
    let s = mcp_server("gw", 0);
    store.insert_mcp_server(&s).await.unwrap();
    let changed = McpServer {
        name: McpServerName::parse("Gateway").unwrap(),
        slug: McpSlug::parse("gateway").unwrap(),
        transport: McpTransport::http("http://127.0.0.1:3001/mcp", strings(&[("X-Key", "k")]))
            .unwrap(),
        updated_at: t0() + TimeDelta::days(1),
        ..s.clone()
    };
    store.update_mcp_server(&changed).await.unwrap();
    let got = store
        .get_mcp_server(&McpServerRef::Slug(changed.slug.clone()))
        .await
        .unwrap();
    assert_same_mcp_server(&got, &changed);
    assert!(
        store
            .get_mcp_server(&McpServerRef::Slug(s.slug.clone()))
            .await
            .is_err(),
        "the old slug is free"
    );
    let ghost = mcp_server("ghost", 0);
    let err = store.update_mcp_server(&ghost).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "mcp_server", id } if *id == ghost.id.to_string()),
        "{err:?}"
    );
    assert!(store.delete_mcp_server(&s.id).await.unwrap());
    assert!(!store.delete_mcp_server(&s.id).await.unwrap());
    assert_eq!(store.list_mcp_servers(page(10, 0)).await.unwrap().total, 0);
}

async fn mcp_server_secrets_stay_hidden(db: Database) {
    let store = db.mcp_servers();
    let s = McpServer {
        transport: McpTransport::http(
            "https://mcp.example.com/mcp",
            strings(&[("Authorization", "Bearer hdr-top-secret")]),
        )
        .unwrap(),
        ..mcp_server("hidden", 0)
    };
    store.insert_mcp_server(&s).await.unwrap();
    let stdio = mcp_server("env-hidden", 1);
    store.insert_mcp_server(&stdio).await.unwrap();
    let got = store
        .get_mcp_server(&McpServerRef::Id(s.id.clone()))
        .await
        .unwrap();
    let listed = store.list_mcp_servers(page(10, 0)).await.unwrap();
    let err = store.insert_mcp_server(&s).await.unwrap_err();
    for shown in [
        format!("{got:?}"),
        format!("{listed:?}"),
        format!("{err:?}"),
        err.to_string(),
    ] {
        assert!(
            !shown.contains("hdr-top-secret") && !shown.contains("env-secret-env-hidden"),
            "{shown}"
        );
    }
    assert!(transport_text(&got.transport).contains("hdr-top-secret"));
}

// ---------------------------------------------------------------------------------------
// Tasks (issue 18)

fn task(title: &str, priority: TaskPriority, secs: i64) -> Task {
    Task {
        id: TaskId::generate(),
        title: title.into(),
        description: None,
        agent_id: AgentId::generate(),
        agent_key: AgentKey::parse("bot").unwrap(),
        priority,
        data: Map::new(),
        status: TaskStatus::Pending,
        idempotency_key: None,
        max_attempts: 2,
        attempts: 0,
        run_at: t0() + TimeDelta::seconds(secs),
        result: None,
        error: None,
        created_by: Some("user_1".into()),
        lease_owner: None,
        lease_expires_at: None,
        created_at: t0() + TimeDelta::seconds(secs),
        updated_at: t0() + TimeDelta::seconds(secs),
        started_at: None,
        completed_at: None,
    }
}

async fn tasks_are_claimed_by_priority_then_age_once(db: Database) {
    let store = db.tasks();
    let now = t0() + TimeDelta::seconds(100);
    let lease = Duration::from_secs(30);
    let old_low = task("old low", TaskPriority::Low, 0);
    let new_high = task("new high", TaskPriority::High, 5);
    let old_high = task("old high", TaskPriority::High, 1);
    let medium = task("medium", TaskPriority::Medium, 2);
    let future = Task {
        run_at: now + TimeDelta::seconds(60),
        ..task("future", TaskPriority::High, 3)
    };
    for t in [&old_low, &new_high, &old_high, &medium, &future] {
        assert!(store.insert_task(t).await.unwrap().1);
    }
    let mut order = Vec::new();
    while let Some(t) = store.claim_task("w1", lease, now).await.unwrap() {
        assert_eq!(t.status, TaskStatus::Running);
        assert_eq!(t.attempts, 1);
        assert_eq!(t.lease_owner.as_deref(), Some("w1"));
        assert_eq!(t.lease_expires_at, Some(now + TimeDelta::seconds(30)));
        assert_eq!(t.started_at, Some(now));
        order.push(t.title);
    }
    assert_eq!(
        order,
        ["old high", "new high", "medium", "old low"],
        "not before run_at"
    );
    // Concurrent claims never take one task twice.
    let many: Vec<Task> = (0..20)
        .map(|n| task(&format!("c{n}"), TaskPriority::Medium, 10 + n))
        .collect();
    for t in &many {
        store.insert_task(t).await.unwrap();
    }
    let mut claims = tokio::task::JoinSet::new();
    for w in 0..30 {
        let store = store.clone();
        claims.spawn(async move {
            store
                .claim_task(&format!("w{w}"), lease, now)
                .await
                .unwrap()
        });
    }
    let mut claimed: Vec<String> = claims
        .join_all()
        .await
        .into_iter()
        .flatten()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(claimed.len(), 20, "every runnable task claimed once");
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), 20, "no task claimed twice");
    let listed = store
        .list_tasks(
            &TaskFilter {
                status: Some(TaskStatus::Running),
                ..TaskFilter::default()
            },
            Page::new(Some(100), None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 24);
}

async fn task_leases_expire_renew_and_guard_every_write(db: Database) {
    let store = db.tasks();
    let now = t0() + TimeDelta::seconds(100);
    let lease = Duration::from_secs(10);
    let t = task("leased", TaskPriority::Medium, 0);
    store.insert_task(&t).await.unwrap();
    let claimed = store.claim_task("a", lease, now).await.unwrap().unwrap();
    assert!(
        store
            .claim_task("b", lease, now + TimeDelta::seconds(5))
            .await
            .unwrap()
            .is_none(),
        "the lease holds"
    );
    assert!(
        store
            .renew_lease(&t.id, "a", now + TimeDelta::seconds(20))
            .await
            .unwrap()
    );
    assert!(
        !store
            .renew_lease(&t.id, "b", now + TimeDelta::seconds(20))
            .await
            .unwrap(),
        "only the holder renews"
    );
    assert!(
        store
            .claim_task("b", lease, now + TimeDelta::seconds(15))
            .await
            .unwrap()
            .is_none(),
        "renewed"
    );
    // Expired: another worker takes it, with one more attempt.
    let again = store
        .claim_task("b", lease, now + TimeDelta::seconds(21))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, claimed.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(
        again.started_at, claimed.started_at,
        "the first start is kept"
    );
    // The old holder can neither renew nor finish.
    assert!(
        !store
            .renew_lease(&t.id, "a", now + TimeDelta::seconds(40))
            .await
            .unwrap()
    );
    let done = TaskOutcome::Completed(json!({"response": "late"}));
    assert!(
        store
            .finish_task(&t.id, "a", &done, now + TimeDelta::seconds(22))
            .await
            .unwrap()
            .is_none()
    );
    // Its last attempt expiring too: reaped as failed (attempts are used up).
    assert!(
        store
            .claim_task("c", lease, now + TimeDelta::seconds(40))
            .await
            .unwrap()
            .is_none(),
        "no attempts left"
    );
    let reaped = store
        .reap_tasks(now + TimeDelta::seconds(40))
        .await
        .unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].status, TaskStatus::Failed);
    assert!(reaped[0].error.as_deref().unwrap().contains("lease"));
    assert!(
        store
            .reap_tasks(now + TimeDelta::seconds(41))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn task_failures_retry_then_fail_and_cancels_win(db: Database) {
    let store = db.tasks();
    let now = t0() + TimeDelta::seconds(100);
    let lease = Duration::from_secs(10);
    let t = task("flaky", TaskPriority::Medium, 0);
    store.insert_task(&t).await.unwrap();
    store.claim_task("w", lease, now).await.unwrap().unwrap();
    let failed = |retry| TaskOutcome::Failed {
        error: "upstream 500".into(),
        retry,
        retry_at: now + TimeDelta::seconds(5),
    };
    let after = store
        .finish_task(&t.id, "w", &failed(true), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, TaskStatus::Pending, "retried");
    assert_eq!(after.run_at, now + TimeDelta::seconds(5));
    assert_eq!(after.error.as_deref(), Some("upstream 500"));
    assert!(
        store.claim_task("w", lease, now).await.unwrap().is_none(),
        "not before retry_at"
    );
    store
        .claim_task("w", lease, now + TimeDelta::seconds(5))
        .await
        .unwrap()
        .unwrap();
    let after = store
        .finish_task(&t.id, "w", &failed(true), now + TimeDelta::seconds(6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, TaskStatus::Failed, "attempts used up");
    assert_eq!(after.completed_at, Some(now + TimeDelta::seconds(6)));
    assert_eq!(
        after.lease_owner.as_deref(),
        Some("w"),
        "the worker that ran it is kept"
    );

    // A failure that another attempt cannot fix: failed at once.
    let t2 = task("doomed", TaskPriority::Medium, 1);
    store.insert_task(&t2).await.unwrap();
    store.claim_task("w", lease, now).await.unwrap().unwrap();
    let after = store
        .finish_task(&t2.id, "w", &failed(false), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.status, after.attempts), (TaskStatus::Failed, 1));

    // A cancel while running wins over the worker's result.
    let t3 = task("cancelled", TaskPriority::Medium, 2);
    store.insert_task(&t3).await.unwrap();
    store.claim_task("w", lease, now).await.unwrap().unwrap();
    let cancelled = store.cancel_task(&t3.id, now).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(cancelled.lease_owner, None);
    let done = TaskOutcome::Completed(json!({"response": "too late"}));
    assert!(
        store
            .finish_task(&t3.id, "w", &done, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .renew_lease(&t3.id, "w", now + TimeDelta::seconds(9))
            .await
            .unwrap()
    );
    let kept = store.get_task(&t3.id).await.unwrap();
    assert_eq!((kept.status, kept.result), (TaskStatus::Cancelled, None));
    // Cancelling an ended task changes nothing; an absent task is not found.
    assert_eq!(
        store.cancel_task(&t2.id, now).await.unwrap().status,
        TaskStatus::Failed
    );
    assert!(matches!(
        store.cancel_task(&TaskId::generate(), now).await,
        Err(Error::NotFound { entity: "task", .. })
    ));
    // A completed task keeps its result exactly.
    let t4 = task("fine", TaskPriority::Medium, 3);
    store.insert_task(&t4).await.unwrap();
    store.claim_task("w", lease, now).await.unwrap().unwrap();
    let result = json!({"response": "ünïcode \"answer\"", "usage": {"total_tokens": 3}});
    let done = store
        .finish_task(&t4.id, "w", &TaskOutcome::Completed(result.clone()), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(store.get_task(&t4.id).await.unwrap().result, Some(result));
}

async fn task_idempotency_keys_are_per_caller(db: Database) {
    let store = db.tasks();
    let first = Task {
        idempotency_key: Some("order-42".into()),
        ..task("first", TaskPriority::Medium, 0)
    };
    assert!(store.insert_task(&first).await.unwrap().1);
    let again = Task {
        idempotency_key: Some("order-42".into()),
        ..task("again", TaskPriority::High, 1)
    };
    let (got, created) = store.insert_task(&again).await.unwrap();
    assert!(!created);
    assert_eq!(got.id, first.id);
    assert_eq!(got.title, "first");
    let other_caller = Task {
        idempotency_key: Some("order-42".into()),
        created_by: Some("key:other".into()),
        ..task("other", TaskPriority::Medium, 2)
    };
    assert!(store.insert_task(&other_caller).await.unwrap().1);
    let listed = store
        .list_tasks(&TaskFilter::default(), Page::new(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(listed.total, 2);
    let mine = store
        .list_tasks(
            &TaskFilter {
                created_by: Some("key:other".into()),
                ..TaskFilter::default()
            },
            Page::new(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(mine.total, 1);
}

async fn rate_usage_adds_up_across_reporters(db: Database) {
    let store = db.rate_usage();
    let window = t0();
    let a = store
        .add_usage(window, &[("key:a".into(), 3), ("key:b".into(), 1)])
        .await
        .unwrap();
    assert_eq!(a, [("key:a".to_owned(), 3), ("key:b".to_owned(), 1)]);
    let b = store
        .add_usage(window, &[("key:a".into(), 4), ("key:c".into(), 0)])
        .await
        .unwrap();
    assert_eq!(b, [("key:a".to_owned(), 7), ("key:c".to_owned(), 0)]);
    let next = store
        .add_usage(window + TimeDelta::minutes(1), &[("key:a".into(), 1)])
        .await
        .unwrap();
    assert_eq!(
        next,
        [("key:a".to_owned(), 1)],
        "a new window starts from zero"
    );
}

// ---------------------------------------------------------------------------------------
// Clusters

fn cluster(name: &str, members: &[(&str, u32)]) -> agentry_domain::cluster::Cluster {
    use agentry_domain::cluster::{Cluster, ClusterId, ClusterMember, Namespace, ResourcePolicy};
    Cluster {
        id: ClusterId::generate(),
        name: ClusterName::parse(name).unwrap(),
        namespace: Namespace::parse("team-a").unwrap(),
        api_version: "goagents.dev/v1".into(),
        policy: ResourcePolicy {
            max_concurrent_agents: Some(5),
            idle_timeout: Some(Duration::from_secs(300)),
            scale_to_zero: true,
        },
        members: members
            .iter()
            .map(|(k, n)| ClusterMember {
                key: AgentKey::parse(k).unwrap(),
                instances: *n,
            })
            .collect(),
        generation: 1,
        created_by: Some("user_1".into()),
        created_at: t0(),
        updated_at: t0() + TimeDelta::microseconds(7),
    }
}

async fn cluster_insert_get_and_round_trip(db: Database) {
    let store = db.clusters();
    let c = cluster("support", &[("intent-classifier", 2), ("assistant", 1)]);
    store.insert_cluster(&c).await.unwrap();
    let got = store.get_cluster(&c.name).await.unwrap();
    assert_eq!(got, c);
    let bare = agentry_domain::cluster::Cluster {
        policy: agentry_domain::cluster::ResourcePolicy::default(),
        created_by: None,
        members: Vec::new(),
        ..cluster("bare", &[])
    };
    store.insert_cluster(&bare).await.unwrap();
    assert_eq!(store.get_cluster(&bare.name).await.unwrap(), bare);
    let err = store
        .get_cluster(&ClusterName::parse("nope").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { entity: "cluster", id } if id == "nope"),
        "{err:?}"
    );
}

async fn cluster_duplicate_name_is_a_conflict_on_name(db: Database) {
    let store = db.clusters();
    store.insert_cluster(&cluster("dup", &[])).await.unwrap();
    let err = store
        .insert_cluster(&cluster("dup", &[]))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&err), Some("name"), "{err:?}");
    assert_eq!(store.list_clusters(page(10, 0)).await.unwrap().total, 1);
}

async fn cluster_update_is_compare_and_set(db: Database) {
    let store = db.clusters();
    let c = cluster("scaled", &[("a", 1)]);
    store.insert_cluster(&c).await.unwrap();
    let mut next = c.clone();
    next.members[0].instances = 3;
    next.generation = 2;
    assert!(store.update_cluster(&next, 1).await.unwrap());
    let mut stale = c.clone();
    stale.members[0].instances = 9;
    stale.generation = 2;
    assert!(
        !store.update_cluster(&stale, 1).await.unwrap(),
        "a writer that read generation 1 loses"
    );
    assert_eq!(store.get_cluster(&c.name).await.unwrap(), next);
    let ghost = cluster("ghost", &[]);
    let err = store.update_cluster(&ghost, 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                entity: "cluster",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn cluster_list_by_name_and_delete(db: Database) {
    let store = db.clusters();
    for name in ["b", "c", "a"] {
        store.insert_cluster(&cluster(name, &[])).await.unwrap();
    }
    let names = |p: &agentry_domain::page::Paged<agentry_domain::cluster::Cluster>| -> Vec<String> {
        p.items.iter().map(|c| c.name.to_string()).collect()
    };
    let all = store.list_clusters(page(10, 0)).await.unwrap();
    assert_eq!(
        (names(&all), all.total),
        (vec!["a".into(), "b".into(), "c".into()], 3)
    );
    let second = store.list_clusters(page(2, 2)).await.unwrap();
    assert_eq!(names(&second), ["c"]);
    let a = all.items[0].clone();
    assert!(store.delete_cluster(&a.id).await.unwrap());
    assert!(!store.delete_cluster(&a.id).await.unwrap());
    assert_eq!(store.list_clusters(page(10, 0)).await.unwrap().total, 2);
}

fn eval_case(text: &str) -> agentry_domain::eval::TestCase {
    agentry_domain::eval::TestCase::from_json(
        "",
        &serde_json::json!({"name": text, "input": [{"role": "system", "content": "Be {{tone}}."}, {"role": "user", "content": text}],
            "context": {"tone": "brief"}, "expected": {"answer": text},
            "assertions": [{"type": "equals"}, {"type": "regex", "pattern": "^a"}, {"type": "judge", "rubric": "good", "threshold": 0.5, "judge": "mock/echo"},
                {"type": "tool_called", "name": "t", "arguments": {"x": 1}}, {"type": "json_schema", "schema": {"type": "object"}}]}),
    )
    .unwrap()
}

fn testset(name: &str, at: i64) -> agentry_domain::eval::TestSet {
    agentry_domain::eval::TestSet {
        id: agentry_domain::eval::TestSetId::generate(),
        name: name.to_owned(),
        description: Some("checks".into()),
        cases: vec![eval_case("one"), eval_case("two")],
        revision: 1,
        created_at: t0() + TimeDelta::seconds(at),
        updated_at: t0() + TimeDelta::seconds(at),
    }
}

async fn testsets_round_trip_and_update_by_revision(db: Database) {
    let store = db.evals();
    let a = testset("alpha", 0);
    let b = testset("beta", 1);
    store.insert_testset(&a).await.unwrap();
    store.insert_testset(&b).await.unwrap();
    assert_eq!(store.get_testset(&a.id).await.unwrap(), a);
    assert_eq!(store.get_testset_by_name("beta").await.unwrap(), b);
    let taken = store
        .insert_testset(&testset("alpha", 2))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(&taken), Some("name"));
    let missing = agentry_domain::eval::TestSetId::generate();
    assert!(matches!(
        store.get_testset(&missing).await,
        Err(Error::NotFound {
            entity: "testset",
            ..
        })
    ));
    let listed = store.list_testsets(page(1, 0)).await.unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items[0].name, "beta", "newest first");
    assert_eq!(listed.items[0].case_count, 2);
    // A write names the revision it read: the second of two writers from revision 1 loses.
    let mut first = a.clone();
    first.cases.truncate(1);
    first.revision = 2;
    assert!(store.update_testset(&first, 1).await.unwrap());
    let mut second = a.clone();
    second.name = "alpha two".into();
    second.revision = 2;
    assert!(!store.update_testset(&second, 1).await.unwrap());
    assert_eq!(store.get_testset(&a.id).await.unwrap(), first);
    let mut clash = first.clone();
    clash.name = "beta".into();
    clash.revision = 3;
    let e = store.update_testset(&clash, 2).await.unwrap_err();
    assert_eq!(conflict_field(&e), Some("name"));
    assert!(store.delete_testset(&a.id).await.unwrap());
    assert!(!store.delete_testset(&a.id).await.unwrap());
    assert!(matches!(
        store.update_testset(&first, 2).await,
        Err(Error::NotFound { .. })
    ));
}

fn eval_run(at: i64) -> agentry_domain::eval::EvalRun {
    let set = testset("runs", 0);
    agentry_domain::eval::EvalRun {
        id: agentry_domain::eval::EvalRunId::generate(),
        testset_id: set.id.clone(),
        testset_name: set.name.clone(),
        status: agentry_domain::eval::EvalStatus::Pending,
        configurations: agentry_domain::eval::NewEvalRun::new(
            &[serde_json::json!({"agent": "a", "version": 2}), serde_json::json!({"model": "mock/echo", "preamble": "x", "top_p": 0.5, "max_tokens": 10})],
            Some(2),
            Some(3),
            None,
        )
        .unwrap()
        .configurations,
        cases: set.cases,
        concurrency: 2,
        repeats: 3,
        judge: Some("mock/echo".into()),
        total: 12,
        done: 0,
        error: None,
        created_by: Some("user:u1".into()),
        lease_owner: None,
        lease_expires_at: None,
        attempts: 0,
        created_at: t0() + TimeDelta::seconds(at),
        updated_at: t0() + TimeDelta::seconds(at),
        started_at: None,
        completed_at: None,
    }
}

async fn optimizations_one_active_per_agent_claimed_once_and_leased(db: Database) {
    use agentry_domain::optimization::{
        Optimization, OptimizationId, OptimizationRequest, Phase, Progress,
    };
    let store = db.optimizations();
    let a = agent("Optimised");
    db.agents().insert_agent(&a).await.unwrap();
    let at = |s: i64| t0() + TimeDelta::seconds(s);
    let new = |s: i64| Optimization {
        id: OptimizationId::generate(),
        agent_id: a.id.clone(),
        testset_id: agentry_domain::eval::TestSetId::generate(),
        status: TaskStatus::Pending,
        phase: None,
        request: OptimizationRequest {
            testset: "testset_00000000000000000000000000000001".into(),
            candidates: 2,
            optimizer_model: Some("mock/echo".into()),
            concurrency: 3,
        },
        progress: Progress::default(),
        draft_version: None,
        error: None,
        created_by: Some("user:alice".into()),
        lease_owner: None,
        lease_expires_at: None,
        attempts: 0,
        created_at: at(s),
        updated_at: at(s),
        started_at: None,
        completed_at: None,
    };
    let first = new(0);
    store.insert_optimization(&first).await.unwrap();
    assert_eq!(
        store.get_optimization(&first.id).await.unwrap(),
        first,
        "round trip"
    );
    // One pending or running optimisation per agent.
    assert!(matches!(
        store.insert_optimization(&new(1)).await,
        Err(Error::Conflict { .. })
    ));
    let (latest, last) = store.optimization_state(&a.id).await.unwrap();
    assert_eq!((latest.map(|o| o.id), last), (Some(first.id.clone()), None));
    // Claimed once.
    let lease = Duration::from_secs(30);
    let mut claims = tokio::task::JoinSet::new();
    for w in 0..4 {
        let store = store.clone();
        claims.spawn(async move {
            store
                .claim_optimization(&format!("r{w}"), lease, at(10))
                .await
                .unwrap()
        });
    }
    let claimed: Vec<_> = claims.join_all().await.into_iter().flatten().collect();
    assert_eq!(claimed.len(), 1);
    let mut running = claimed[0].clone();
    assert_eq!((running.status, running.attempts), (TaskStatus::Running, 1));
    let owner = running.lease_owner.clone().unwrap();
    // Progress is saved by the holder only.
    running.phase = Some(Phase::Optimizing);
    running.progress.issues = vec!["slow answers".into()];
    running.progress.baseline = Some("Be helpful.".into());
    assert!(
        !store
            .save_optimization(&running, "intruder", at(60))
            .await
            .unwrap()
    );
    assert!(
        store
            .save_optimization(&running, &owner, at(60))
            .await
            .unwrap()
    );
    let saved = store.get_optimization(&running.id).await.unwrap();
    assert_eq!(saved.phase, Some(Phase::Optimizing));
    assert_eq!(saved.progress, running.progress);
    // An expired lease lets another runner take it over, with its progress.
    assert!(
        store
            .claim_optimization("r9", lease, at(30))
            .await
            .unwrap()
            .is_none()
    );
    let taken = store
        .claim_optimization("r9", lease, at(61))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.attempts, taken.progress.issues.len()), (2, 1));
    assert!(
        !store
            .finish_optimization(&taken, &owner, at(62))
            .await
            .unwrap()
    );
    let mut done = taken.clone();
    done.status = TaskStatus::Completed;
    done.draft_version = Some(3);
    assert!(
        store
            .finish_optimization(&done, "r9", at(62))
            .await
            .unwrap()
    );
    let (latest, last) = store.optimization_state(&a.id).await.unwrap();
    assert_eq!(latest.unwrap().draft_version, Some(3));
    assert_eq!(last, Some(at(62)));
    // The agent is free again; a cancel of a pending one sticks, of an ended one changes nothing.
    let second = new(100);
    store.insert_optimization(&second).await.unwrap();
    let cancelled = store
        .cancel_optimization(&second.id, at(101))
        .await
        .unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(
        store
            .cancel_optimization(&first.id, at(102))
            .await
            .unwrap()
            .status,
        TaskStatus::Completed
    );
    let page = store.list_optimizations(&a.id, page(1, 0)).await.unwrap();
    assert_eq!((page.total, page.items[0].id.clone()), (2, second.id));
    assert!(matches!(
        store.get_optimization(&OptimizationId::generate()).await,
        Err(Error::NotFound {
            entity: "optimization",
            ..
        })
    ));
}

async fn eval_runs_are_claimed_once_and_leases_guard_every_write(db: Database) {
    use agentry_domain::eval::EvalStatus;
    let store = db.evals();
    let now = t0() + TimeDelta::seconds(100);
    let lease = Duration::from_secs(30);
    let old = eval_run(0);
    let new = eval_run(1);
    store.insert_eval_run(&new).await.unwrap();
    store.insert_eval_run(&old).await.unwrap();
    assert_eq!(
        store.get_eval_run(&old.id).await.unwrap(),
        old,
        "round trip"
    );
    // Concurrent claims: the two runs, each once, oldest first.
    let mut claims = tokio::task::JoinSet::new();
    for w in 0..8 {
        let store = store.clone();
        claims.spawn(async move {
            store
                .claim_eval_run(&format!("r{w}"), lease, now)
                .await
                .unwrap()
        });
    }
    let claimed: Vec<_> = claims.join_all().await.into_iter().flatten().collect();
    assert_eq!(claimed.len(), 2);
    let first = claimed.iter().find(|r| r.id == old.id).unwrap();
    assert_eq!(first.status, EvalStatus::Running);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.lease_expires_at, Some(now + TimeDelta::seconds(30)));
    let owner = first.lease_owner.clone().unwrap();
    assert!(
        store
            .claim_eval_run("late", lease, now)
            .await
            .unwrap()
            .is_none()
    );
    // Only the holder renews or finishes.
    assert!(
        !store
            .renew_eval_lease(&old.id, "someone", now)
            .await
            .unwrap()
    );
    assert!(
        store
            .renew_eval_lease(&old.id, &owner, now + TimeDelta::seconds(40))
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_eval_run(&old.id, "someone", None, now)
            .await
            .unwrap()
    );
    // An expired lease is taken over (one more attempt, first start kept).
    let later = now + TimeDelta::seconds(100);
    let taken = store
        .claim_eval_run("r9", lease, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.started_at, Some(now));
    assert!(
        !store
            .finish_eval_run(&taken.id, &owner, None, later)
            .await
            .unwrap(),
        "the old holder lost it"
    );
    assert!(
        store
            .finish_eval_run(&taken.id, "r9", Some("boom"), later)
            .await
            .unwrap()
    );
    let failed = store.get_eval_run(&taken.id).await.unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (EvalStatus::Failed, Some("boom"))
    );
    // Cancel wins over the holder; a finished run stays as it is.
    let other = if taken.id == old.id { &new } else { &old };
    let cancelled = store.cancel_eval_run(&other.id, later).await.unwrap();
    assert_eq!(cancelled.status, EvalStatus::Cancelled);
    assert!(cancelled.lease_owner.is_none());
    let holder = claimed
        .iter()
        .find(|r| r.id == other.id)
        .unwrap()
        .lease_owner
        .clone()
        .unwrap();
    assert!(
        !store
            .renew_eval_lease(&other.id, &holder, later)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .cancel_eval_run(&taken.id, later)
            .await
            .unwrap()
            .status,
        EvalStatus::Failed
    );
    assert!(matches!(
        store
            .cancel_eval_run(&agentry_domain::eval::EvalRunId::generate(), later)
            .await,
        Err(Error::NotFound {
            entity: "eval_run",
            ..
        })
    ));
    // Lists filter by test set and status, newest first.
    let all = store
        .list_eval_runs(&Default::default(), page(10, 0))
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [new.id.clone(), old.id.clone()]
    );
    let filter = agentry_domain::eval::EvalRunFilter {
        status: Some(EvalStatus::Cancelled),
        created_by: Some("user:u1".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_eval_runs(&filter, page(10, 0))
            .await
            .unwrap()
            .total,
        1
    );
    let filter = agentry_domain::eval::EvalRunFilter {
        testset_id: Some(agentry_domain::eval::TestSetId::generate()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_eval_runs(&filter, page(10, 0))
            .await
            .unwrap()
            .total,
        0
    );
}

async fn eval_results_are_stored_once_and_counted(db: Database) {
    use agentry_domain::eval::{EvalResult, Verdict};
    let store = db.evals();
    let run = eval_run(0);
    store.insert_eval_run(&run).await.unwrap();
    let result = |config: u32, case: usize, repeat: u32, output: &str| EvalResult {
        run_id: run.id.clone(),
        configuration: config,
        case_id: run.cases[case].id.clone(),
        repeat,
        passed: config == 0,
        output: output.to_owned(),
        verdicts: vec![
            Verdict {
                kind: "judge",
                passed: true,
                reason: "score 0.9".into(),
                score: Some(0.9),
            },
            Verdict {
                kind: "regex",
                passed: false,
                reason: "no match".into(),
                score: None,
            },
        ],
        error: (config == 1).then(|| "provider failed".to_owned()),
        latency_ms: 12,
        prompt_tokens: 7,
        completion_tokens: 3,
        model: Some("mock/echo".into()),
        tool_calls: vec![serde_json::json!({"name": "t", "arguments": "{}"})],
        created_at: t0(),
    };
    let a = result(0, 0, 0, "first");
    store.insert_eval_result(&a).await.unwrap();
    // A runner that took over may repeat a case: the first result stays.
    store
        .insert_eval_result(&result(0, 0, 0, "second"))
        .await
        .unwrap();
    store
        .insert_eval_result(&result(1, 1, 2, "other"))
        .await
        .unwrap();
    let stored = store.eval_results(&run.id).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], a, "round trip");
    assert_eq!(stored[1].error.as_deref(), Some("provider failed"));
    assert_eq!(store.get_eval_run(&run.id).await.unwrap().done, 2);
    let listed = store
        .list_eval_runs(&Default::default(), page(5, 0))
        .await
        .unwrap();
    assert_eq!(listed.items[0].done, 2);
}

fn analysis_at(
    conversation: &str,
    agent: &AgentId,
    outcome: agentry_domain::insight::Outcome,
    task: bool,
    sentiment: f64,
    issues: &[&str],
    at: DateTime<Utc>,
) -> agentry_domain::insight::ConversationAnalysis {
    agentry_domain::insight::ConversationAnalysis {
        conversation_id: conversation.to_owned(),
        agent_id: agent.clone(),
        analysis: agentry_domain::insight::Analysis {
            outcome,
            task_completed: task,
            sentiment,
            issues: issues.iter().map(|i| (*i).to_owned()).collect(),
            analyser: "test".into(),
        },
        message_count: 4,
        response_ms: Some(1200.0),
        last_message_at: at,
        analysed_at: at,
    }
}

async fn analyses_are_tallied_per_period_with_their_issues(db: Database) {
    use agentry_domain::insight::Outcome::{Abandoned, Completed, Escalated};
    let store = db.insights();
    let agent = AgentId::generate();
    let other = AgentId::generate();
    let now = t0() + TimeDelta::days(100);
    let day = |d: i64| now - TimeDelta::days(d);
    // This week: 4 conversations; the week before: 2; long ago: 1; another agent: 1.
    for a in [
        analysis_at(
            "c1",
            &agent,
            Completed,
            true,
            0.8,
            &["slow answers"],
            day(1),
        ),
        analysis_at("c2", &agent, Completed, true, 0.1, &[], day(2)),
        analysis_at(
            "c3",
            &agent,
            Abandoned,
            false,
            -0.6,
            &["refund problem", "slow answers"],
            day(3),
        ),
        analysis_at(
            "c4",
            &agent,
            Escalated,
            false,
            -0.1,
            &["asked for a human"],
            day(6),
        ),
        analysis_at("p1", &agent, Completed, true, 0.5, &[], day(8)),
        analysis_at(
            "p2",
            &agent,
            Abandoned,
            false,
            -0.9,
            &["refund problem"],
            day(13),
        ),
        analysis_at("old", &agent, Completed, false, 0.0, &[], day(60)),
        analysis_at(
            "x1",
            &other,
            Completed,
            true,
            1.0,
            &["slow answers"],
            day(1),
        ),
    ] {
        store.save_analysis(&a).await.unwrap();
    }
    let week = store.tally(&agent, Some(day(7)), now).await.unwrap();
    assert_eq!(
        (
            week.total,
            week.completed,
            week.abandoned,
            week.escalated,
            week.task_completed,
            week.positive,
            week.negative
        ),
        (4, 2, 1, 1, 2, 1, 1)
    );
    assert!(
        (week.sentiment_avg.unwrap() - 0.05).abs() < 1e-9,
        "{week:?}"
    );
    assert_eq!(week.response_ms_avg, Some(1200.0));
    assert_eq!(week.length_avg, Some(4.0));
    let before = store.tally(&agent, Some(day(14)), day(7)).await.unwrap();
    assert_eq!((before.total, before.task_completed), (2, 1));
    // The trend: 50.0 % this week against 50.0 % before, +0.0 points.
    assert_eq!(
        agentry_domain::insight::rate(week.task_completed, week.total)
            - agentry_domain::insight::rate(before.task_completed, before.total),
        0.0
    );
    let all = store.tally(&agent, None, now).await.unwrap();
    assert_eq!(all.total, 7);
    let empty = store.tally(&AgentId::generate(), None, now).await.unwrap();
    assert_eq!(
        (empty.total, empty.sentiment_avg, empty.length_avg),
        (0, None, None)
    );

    let issues = store
        .issue_counts(&agent, Some(day(7)), now, 10)
        .await
        .unwrap();
    let got: Vec<(&str, u64, u64)> = issues
        .iter()
        .map(|i| (i.label.as_str(), i.count, i.failed))
        .collect();
    assert_eq!(
        got,
        [
            ("slow answers", 2, 1),
            ("asked for a human", 1, 1),
            ("refund problem", 1, 1)
        ]
    );
    // Analysing again replaces the analysis and its issues.
    store
        .save_analysis(&analysis_at(
            "c3",
            &agent,
            Completed,
            true,
            0.9,
            &[],
            day(3),
        ))
        .await
        .unwrap();
    let issues = store
        .issue_counts(&agent, Some(day(7)), now, 10)
        .await
        .unwrap();
    assert_eq!(issues.iter().map(|i| i.count).sum::<u64>(), 2, "{issues:?}");
    assert_eq!(
        store
            .tally(&agent, Some(day(7)), now)
            .await
            .unwrap()
            .completed,
        3
    );
    let got = store.get_analysis("c3").await.unwrap().unwrap();
    assert_eq!(got.analysis.sentiment, 0.9);
    assert!(store.get_analysis("nope").await.unwrap().is_none());
    assert_eq!(
        store.analyses_since("test", day(2)).await.unwrap(),
        3,
        "c1, x1 and the new c3"
    );
}

async fn idle_conversations_wait_for_their_analysis(db: Database) {
    let agent = seed_agent(&db, "idle").await;
    let convs = db.conversations();
    let opened = open_new(&db, "conv_idle1", &agent, "s1").await;
    let msg = msg(&opened, "msg_idle1", 10);
    convs
        .append_messages(std::slice::from_ref(&msg))
        .await
        .unwrap();
    let _empty = open_new(&db, "conv_idle2", &agent, "s2").await;
    let store = db.insights();
    let updated = convs
        .get_conversation("conv_idle1")
        .await
        .unwrap()
        .updated_at;
    let later = updated + TimeDelta::minutes(1);
    let idle = store
        .idle_conversations(DateTime::<Utc>::UNIX_EPOCH, later, 10)
        .await
        .unwrap();
    assert_eq!(
        idle.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["conv_idle1"],
        "no empty conversation"
    );
    assert_eq!(idle[0].message_count, 1);
    assert!(
        store
            .idle_conversations(DateTime::<Utc>::UNIX_EPOCH, updated, 10)
            .await
            .unwrap()
            .is_empty(),
        "not idle yet"
    );
    store
        .save_analysis(&analysis_at(
            "conv_idle1",
            &agent,
            agentry_domain::insight::Outcome::Completed,
            true,
            0.0,
            &[],
            updated,
        ))
        .await
        .unwrap();
    assert!(
        store
            .idle_conversations(DateTime::<Utc>::UNIX_EPOCH, later, 10)
            .await
            .unwrap()
            .is_empty(),
        "analysed"
    );
    assert_eq!(store.conversation_count(&agent).await.unwrap(), 2);
}
