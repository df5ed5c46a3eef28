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
use agentry_domain::page::Page;
use agentry_domain::provider::{BaseUrl, Provider, ProviderId, ProviderKind, ProviderSource};
use agentry_storage::test_support::{PgSchemaGuard, fresh_postgres_url, fresh_sqlite_url};
use agentry_storage::{Backend, Database, PoolOptions, StorageError};
use chrono::{DateTime, Duration as TimeDelta, SubsecRound, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Fixtures

fn options() -> PoolOptions {
    PoolOptions {
        max_connections: 4,
        connect_timeout: Duration::from_secs(5),
    }
}

fn sqlite_db() -> (Database, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&fresh_sqlite_url(dir.path()), options()).unwrap();
    assert_eq!(db.migrate().unwrap().len(), 1);
    (db, dir)
}

fn postgres_db() -> Option<(Database, PgSchemaGuard)> {
    let (url, guard) = fresh_postgres_url().unwrap()?;
    let db = Database::connect(&url, options()).unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    assert_eq!(db.migrate().unwrap().len(), 1);
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
        json!({"type": "http", "name": "customer_db", "url": "https://db.example/q", "headers": {"x": [1, 2.5, null]}}),
        json!({"type": "mcp", "name": "search", "unicode": "héllo \u{1F600} \"quoted\" \\ back"}),
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
        assert_eq!(db.migrate().unwrap(), ["2026-11-23-000001_init"]);
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
         AND table_name IN ('__diesel_schema_migrations', 'agents', 'agent_tags', 'providers')",
    )
    .bind::<Text, _>(guard.schema())
    .get_result::<Count>(&mut admin)
    .unwrap();
    assert_eq!(count.n, 4);
    drop(db);
}
