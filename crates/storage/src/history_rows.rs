//! Rows of `conversations`, `messages` and `runs`, and their conversion to and from domain
//! types. Unsigned domain numbers are stored in signed columns: every conversion is checked
//! (a value that does not fit is `Internal`, on the way in and on the way out).

use agentry_domain::Error;
use agentry_domain::agent::{AgentId, ModelRef};
use agentry_domain::conversation::{
    Annotations, Conversation, Message, MessageStatus, Run, RunStatus,
};
use agentry_domain::llm::{Role, TokenUsage, ToolCall};
use agentry_domain::provider::ProviderId;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rows::{corrupt, parse_json};
use crate::schema::{conversations, messages, runs};

/// One row of `conversations`. `context` is a JSON object.
///
/// `None` is stored as NULL, not as "the default" (the nullable columns have none): the
/// insert's SQL is then the same for every row and its prepared statement is cached, where
/// `DEFAULT` for `None` made SQLite prepare each insert anew.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversations, treat_none_as_default_value = false)]
pub(crate) struct ConversationRow {
    pub id: String,
    pub agent_id: String,
    pub session_key: String,
    pub context: String,
    pub message_count: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub created_by: Option<String>,
}

/// One row of `messages`. The three token columns are all set or all null, and so are
/// `provider_id` and `model_name`. `tool_calls` is a JSON array of [`StoredToolCall`]s, null
/// when the message made no calls.
///
/// `None` is stored as NULL, for a cached insert statement (as [`ConversationRow`]).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub(crate) struct MessageRow {
    pub id: String,
    pub conversation_id: String,
    pub agent_id: String,
    pub role: String,
    pub content: String,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub total_tokens: Option<i32>,
    pub latency_ms: Option<i64>,
    pub provider_id: Option<String>,
    pub model_name: Option<String>,
    pub agent_version: Option<i32>,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<String>,
    pub annotations: Option<String>,
}

/// One element of `messages.tool_calls`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// One row of `runs`. `log_meta` is a JSON object; `user_id`, `session_id` and `component`
/// copy its string fields of those names, for the list filters.
///
/// `None` is stored as NULL (the table has no column defaults), not as "the default": that
/// keeps the run log's multi-row inserts a single statement with bound values on SQLite (which
/// has no `DEFAULT` in `VALUES` and would insert row by row) and cacheable on PostgreSQL.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = runs, treat_none_as_default_value = false)]
pub(crate) struct RunRow {
    pub id: String,
    pub preamble: String,
    pub prompt: String,
    pub provider_id: String,
    pub model_name: String,
    pub response: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub total_tokens: Option<i32>,
    pub latency_ms: i64,
    pub status: String,
    pub error: Option<String>,
    pub log_meta: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub component: Option<String>,
    pub created_at: NaiveDateTime,
}

impl ConversationRow {
    /// The row of `c`.
    ///
    /// # Errors
    /// `Internal` for a message count beyond the column's range.
    pub(crate) fn of(c: &Conversation) -> Result<Self, Error> {
        Ok(Self {
            id: c.id.clone(),
            agent_id: c.agent_id.to_string(),
            session_key: c.session_key.clone(),
            context: Value::Object(c.context.clone()).to_string(),
            message_count: i64::try_from(c.message_count)
                .map_err(|_| Error::Internal("message count out of range".into()))?,
            created_at: c.created_at.naive_utc(),
            updated_at: c.updated_at.naive_utc(),
            created_by: c.created_by.clone(),
        })
    }
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = Error;

    fn try_from(row: ConversationRow) -> Result<Self, Error> {
        const E: &str = "conversation";
        Ok(Self {
            agent_id: AgentId::parse(&row.agent_id).map_err(|e| corrupt(E, &row.id, &e))?,
            context: parse_json(E, &row.id, "context", &row.context)?,
            message_count: unsigned(E, &row.id, "message_count", row.message_count)?,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            session_key: row.session_key,
            created_by: row.created_by,
            id: row.id,
        })
    }
}

impl TryFrom<&Message> for MessageRow {
    type Error = Error;

    fn try_from(m: &Message) -> Result<Self, Error> {
        let (prompt_tokens, completion_tokens, total_tokens) = usage_columns(m.usage)?;
        Ok(Self {
            id: m.id.clone(),
            conversation_id: m.conversation_id.clone(),
            agent_id: m.agent_id.to_string(),
            role: m.role.as_str().to_owned(),
            content: m.content.clone(),
            prompt_tokens,
            completion_tokens,
            total_tokens,
            latency_ms: m.latency_ms.map(|l| signed("latency_ms", l)).transpose()?,
            provider_id: m.model.as_ref().map(|r| r.provider_id.to_string()),
            model_name: m.model.as_ref().map(|r| r.model_name.clone()),
            agent_version: m
                .agent_version
                .map(|v| signed("agent_version", v))
                .transpose()?,
            status: m.status.as_str().to_owned(),
            created_at: m.created_at.naive_utc(),
            tool_calls: tool_calls_column(&m.tool_calls)?,
            tool_call_id: m.tool_call_id.clone(),
            annotations: if m.annotations.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&m.annotations).map_err(|e| {
                    Error::Internal(format!("cannot encode the annotations of '{}': {e}", m.id))
                })?)
            },
        })
    }
}

impl TryFrom<MessageRow> for Message {
    type Error = Error;

    fn try_from(row: MessageRow) -> Result<Self, Error> {
        const E: &str = "message";
        let id = row.id.as_str();
        let usage = usage_from(
            E,
            id,
            row.prompt_tokens,
            row.completion_tokens,
            row.total_tokens,
        )?;
        let model = match (row.provider_id, row.model_name) {
            (Some(provider), Some(model_name)) => Some(ModelRef {
                provider_id: ProviderId::parse(&provider).map_err(|e| corrupt(E, id, &e))?,
                model_name,
            }),
            (None, None) => None,
            _ => return Err(inconsistent(E, id, "provider_id and model_name")),
        };
        Ok(Self {
            agent_id: AgentId::parse(&row.agent_id).map_err(|e| corrupt(E, id, &e))?,
            role: Role::parse(&row.role).ok_or_else(|| bad_value(E, id, "role", &row.role))?,
            usage,
            latency_ms: row
                .latency_ms
                .map(|l| unsigned(E, id, "latency_ms", l))
                .transpose()?,
            model,
            agent_version: row
                .agent_version
                .map(|v| unsigned(E, id, "agent_version", v))
                .transpose()?,
            status: MessageStatus::parse(&row.status)
                .ok_or_else(|| bad_value(E, id, "status", &row.status))?,
            created_at: row.created_at.and_utc(),
            conversation_id: row.conversation_id,
            tool_calls: row
                .tool_calls
                .as_deref()
                .map(|text| tool_calls_from(E, id, text))
                .transpose()?
                .unwrap_or_default(),
            annotations: match row.annotations.as_deref() {
                None => Annotations::default(),
                Some(text) => parse_json(E, id, "annotations", text)?,
            },
            content: row.content,
            tool_call_id: row.tool_call_id,
            id: row.id,
        })
    }
}

impl TryFrom<&Run> for RunRow {
    type Error = Error;

    fn try_from(r: &Run) -> Result<Self, Error> {
        let (prompt_tokens, completion_tokens, total_tokens) = usage_columns(r.usage)?;
        let meta = |key: &str| r.meta(key).map(str::to_owned);
        Ok(Self {
            id: r.id.clone(),
            preamble: r.preamble.clone(),
            prompt: r.prompt.clone(),
            provider_id: r.model.provider_id.to_string(),
            model_name: r.model.model_name.clone(),
            response: r.response.clone(),
            prompt_tokens,
            completion_tokens,
            total_tokens,
            latency_ms: signed("latency_ms", r.latency_ms)?,
            status: r.status.as_str().to_owned(),
            error: r.error.clone(),
            log_meta: Value::Object(r.log_meta.clone()).to_string(),
            user_id: meta("user_id"),
            session_id: meta("session_id"),
            component: meta("component"),
            created_at: r.created_at.naive_utc(),
        })
    }
}

impl TryFrom<RunRow> for Run {
    type Error = Error;

    fn try_from(row: RunRow) -> Result<Self, Error> {
        const E: &str = "run";
        let id = row.id.as_str();
        Ok(Self {
            model: ModelRef {
                provider_id: ProviderId::parse(&row.provider_id).map_err(|e| corrupt(E, id, &e))?,
                model_name: row.model_name,
            },
            usage: usage_from(
                E,
                id,
                row.prompt_tokens,
                row.completion_tokens,
                row.total_tokens,
            )?,
            latency_ms: unsigned(E, id, "latency_ms", row.latency_ms)?,
            status: RunStatus::parse(&row.status)
                .ok_or_else(|| bad_value(E, id, "status", &row.status))?,
            log_meta: parse_json(E, id, "log_meta", &row.log_meta)?,
            created_at: row.created_at.and_utc(),
            preamble: row.preamble,
            prompt: row.prompt,
            response: row.response,
            error: row.error,
            id: row.id,
        })
    }
}

/// The `tool_calls` column of `calls`: null when there are none.
fn tool_calls_column(calls: &[ToolCall]) -> Result<Option<String>, Error> {
    if calls.is_empty() {
        return Ok(None);
    }
    let stored: Vec<StoredToolCall> = calls
        .iter()
        .map(|c| StoredToolCall {
            id: c.id.clone(),
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        })
        .collect();
    serde_json::to_string(&stored)
        .map(Some)
        .map_err(|e| Error::Internal(format!("tool calls do not encode as JSON: {e}")))
}

/// The calls a `tool_calls` column holds.
fn tool_calls_from(entity: &str, id: &str, text: &str) -> Result<Vec<ToolCall>, Error> {
    let stored: Vec<StoredToolCall> = parse_json(entity, id, "tool_calls", text)?;
    Ok(stored
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        })
        .collect())
}

/// `prompt_tokens`, `completion_tokens` and `total_tokens`, all set or all null.
type TokenColumns = (Option<i32>, Option<i32>, Option<i32>);

/// The three token columns of `usage`.
fn usage_columns(usage: Option<TokenUsage>) -> Result<TokenColumns, Error> {
    let Some(u) = usage else {
        return Ok((None, None, None));
    };
    Ok((
        Some(signed("prompt_tokens", u.prompt_tokens)?),
        Some(signed("completion_tokens", u.completion_tokens)?),
        Some(signed("total_tokens", u.total_tokens)?),
    ))
}

/// The usage the three token columns hold: all set or all null.
fn usage_from(
    entity: &str,
    id: &str,
    prompt: Option<i32>,
    completion: Option<i32>,
    total: Option<i32>,
) -> Result<Option<TokenUsage>, Error> {
    match (prompt, completion, total) {
        (Some(p), Some(c), Some(t)) => Ok(Some(TokenUsage {
            prompt_tokens: unsigned(entity, id, "prompt_tokens", p)?,
            completion_tokens: unsigned(entity, id, "completion_tokens", c)?,
            total_tokens: unsigned(entity, id, "total_tokens", t)?,
        })),
        (None, None, None) => Ok(None),
        _ => Err(inconsistent(entity, id, "token columns")),
    }
}

/// An unsigned domain number as its signed column type, when it fits.
fn signed<U, S>(column: &str, value: U) -> Result<S, Error>
where
    U: Copy + std::fmt::Display,
    S: TryFrom<U>,
{
    S::try_from(value)
        .map_err(|_| Error::Internal(format!("{column} {value} does not fit its column")))
}

/// A stored signed number as its unsigned domain type, when it is not negative.
fn unsigned<S, U>(entity: &str, id: &str, column: &str, value: S) -> Result<U, Error>
where
    S: Copy + std::fmt::Display,
    U: TryFrom<S>,
{
    U::try_from(value).map_err(|_| {
        Error::Internal(format!(
            "stored {entity} '{id}' has an out-of-range {column}: {value}"
        ))
    })
}

fn bad_value(entity: &str, id: &str, column: &str, value: &str) -> Error {
    Error::Internal(format!(
        "stored {entity} '{id}' has an unknown {column} '{value}'"
    ))
}

fn inconsistent(entity: &str, id: &str, columns: &str) -> Error {
    Error::Internal(format!("stored {entity} '{id}' has {columns} partly null"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use agentry_domain::Error;
    use agentry_domain::agent::AgentId;
    use agentry_domain::conversation::{Conversation, Message, MessageStatus};
    use agentry_domain::llm::{Role, TokenUsage, ToolCall};
    use chrono::{NaiveDateTime, Utc};

    use super::{ConversationRow, MessageRow};

    /// A conversation's insert and every message's, with or without their optional fields,
    /// are each one statement prepared once per connection.
    #[test]
    fn inserts_are_prepared_once() {
        use crate::schema::{conversations, messages};
        use diesel::RunQueryDsl;

        let (mut conn, prepared) = crate::database::counted_sqlite();
        let first = message();
        let c = Conversation {
            id: first.conversation_id.clone(),
            agent_id: first.agent_id.clone(),
            session_key: "s".into(),
            context: serde_json::Map::new(),
            message_count: 3,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            created_by: None,
        };
        diesel::insert_into(conversations::table)
            .values(&ConversationRow::of(&c).unwrap())
            .execute(&mut conn)
            .unwrap();
        let bare = Message {
            id: "msg_2".into(),
            role: Role::User,
            usage: None,
            latency_ms: None,
            agent_version: None,
            ..first.clone()
        };
        let called = Message {
            id: "msg_3".into(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "lookup".into(),
                arguments: "{}".into(),
            }],
            ..first.clone()
        };
        for m in [&first, &bare, &called] {
            diesel::insert_into(messages::table)
                .values(&MessageRow::try_from(m).unwrap())
                .execute(&mut conn)
                .unwrap();
        }
        let counted = prepared.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(counted, 2, "one conversation insert and one message insert");
    }

    fn message() -> Message {
        Message {
            id: "msg_1".into(),
            conversation_id: "conv_1".into(),
            agent_id: AgentId::generate(),
            role: Role::Assistant,
            content: "hi".into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            usage: Some(TokenUsage::new(1, 2)),
            latency_ms: Some(5),
            model: None,
            agent_version: Some(3),
            status: MessageStatus::Complete,
            created_at: Utc::now(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn numbers_that_do_not_fit_are_internal_on_write() {
        let huge = Message {
            usage: Some(TokenUsage::new(u32::MAX, 0)),
            ..message()
        };
        assert!(matches!(
            MessageRow::try_from(&huge),
            Err(Error::Internal(_))
        ));
        let late = Message {
            latency_ms: Some(u64::MAX),
            ..message()
        };
        assert!(matches!(
            MessageRow::try_from(&late),
            Err(Error::Internal(_))
        ));
        let version = Message {
            agent_version: Some(u32::MAX),
            ..message()
        };
        assert!(matches!(
            MessageRow::try_from(&version),
            Err(Error::Internal(_))
        ));
    }

    #[test]
    fn bad_rows_are_internal_on_read() {
        let row = MessageRow::try_from(&message()).unwrap();
        let negative = MessageRow {
            latency_ms: Some(-1),
            ..row.clone()
        };
        assert!(matches!(
            Message::try_from(negative),
            Err(Error::Internal(_))
        ));
        let partial = MessageRow {
            total_tokens: None,
            ..row.clone()
        };
        assert!(matches!(
            Message::try_from(partial),
            Err(Error::Internal(_))
        ));
        let half_model = MessageRow {
            provider_id: Some("openai".into()),
            ..row.clone()
        };
        assert!(matches!(
            Message::try_from(half_model),
            Err(Error::Internal(_))
        ));
        let role = MessageRow {
            role: "robot".into(),
            ..row.clone()
        };
        assert!(matches!(Message::try_from(role), Err(Error::Internal(_))));
        for bad in ["not json", "{}", r#"[{"id":"call_1","name":"f"}]"#, "[1]"] {
            let calls = MessageRow {
                tool_calls: Some(bad.into()),
                ..row.clone()
            };
            assert!(
                matches!(Message::try_from(calls), Err(Error::Internal(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Message::try_from(row).unwrap().usage,
            Some(TokenUsage::new(1, 2))
        );

        let conversation = ConversationRow {
            id: "conv_1".into(),
            agent_id: AgentId::generate().to_string(),
            session_key: "s".into(),
            context: "[1]".into(),
            message_count: 0,
            created_at: NaiveDateTime::default(),
            updated_at: NaiveDateTime::default(),
            created_by: None,
        };
        let count = ConversationRow {
            context: "{}".into(),
            message_count: -3,
            ..conversation.clone()
        };
        assert!(matches!(
            Conversation::try_from(conversation),
            Err(Error::Internal(_))
        ));
        assert!(matches!(
            Conversation::try_from(count),
            Err(Error::Internal(_))
        ));
    }

    #[test]
    fn tool_calls_round_trip_and_none_is_null() {
        let plain = MessageRow::try_from(&message()).unwrap();
        assert_eq!(
            (plain.tool_calls.as_deref(), plain.tool_call_id.as_deref()),
            (None, None)
        );
        let back = Message::try_from(plain).unwrap();
        assert!(back.tool_calls.is_empty());
        assert_eq!(back.tool_call_id, None);

        let calling = Message {
            tool_calls: vec![
                ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city": "Zürich \"old town\"",\n "days": 2}"#.into(),
                },
                ToolCall {
                    id: "call_2".into(),
                    name: "noop".into(),
                    arguments: "not json at all\n\u{1F600}".into(),
                },
            ],
            ..message()
        };
        let row = MessageRow::try_from(&calling).unwrap();
        let text = row.tool_calls.clone().unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json[0]["id"], "call_1");
        assert_eq!(json[1]["name"], "noop");
        assert_eq!(Message::try_from(row).unwrap(), calling);

        let answer = Message {
            role: Role::Tool,
            tool_call_id: Some("call_1".into()),
            ..message()
        };
        let row = MessageRow::try_from(&answer).unwrap();
        assert_eq!(row.role, "tool");
        assert_eq!(row.tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(Message::try_from(row).unwrap(), answer);

        // An empty array (never written) reads as no calls.
        let empty = MessageRow {
            tool_calls: Some("[]".into()),
            ..MessageRow::try_from(&message()).unwrap()
        };
        assert!(Message::try_from(empty).unwrap().tool_calls.is_empty());
    }
}
