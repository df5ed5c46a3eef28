//! [`ConversationStore`] over diesel. A conversation is unique per (agent, session key);
//! opening one is race-safe without an upsert (the multi-backend connection has none):
//! look it up, insert it when absent, and on a unique violation look up the winner's.

use agentry_domain::agent::AgentId;
use agentry_domain::conversation::{Conversation, Message, MessageQuery};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::ConversationStore;
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::connection::{AnyConnection, MultiBackend, on_backend};
use crate::group_commit::{Later, Write};
use crate::history_rows::{ConversationRow, MessageRow};
use crate::multi_row::{insert_conversations, insert_messages};
use crate::schema::{conversations, messages};
use crate::store::DieselStore;
use crate::translate::{conflict_on, is_missing_reference, other, query_error};

impl DieselStore {
    /// Appends `messages` (all of one conversation); with `expected`, only while the
    /// conversation holds that many messages (`false`, nothing stored, otherwise).
    async fn append_batch(&self, messages: &[Message], expected: Option<i64>) -> Result<bool> {
        let Some(last) = messages.last() else {
            return Ok(true);
        };
        all_of(messages, &last.conversation_id, &last.agent_id)?;
        let rows = messages
            .iter()
            .map(MessageRow::try_from)
            .collect::<Result<Vec<_>>>()?;
        let added = i64::try_from(rows.len())
            .map_err(|_| Error::Internal("too many messages in one batch".into()))?;
        let batch = Batch {
            conversation: last.conversation_id.clone(),
            agent: last.agent_id.to_string(),
            added,
            expected,
            updated_at: last.created_at.naive_utc(),
            rows,
        };
        self.grouped(batch).await
    }
}

/// How many times [`open`] looks up, then inserts, before giving up (each retry means the
/// conversation that won a race was deleted before it could be read).
const OPEN_ATTEMPTS: usize = 3;

#[async_trait]
impl ConversationStore for DieselStore {
    async fn open_conversation(&self, fresh: &Conversation) -> Result<(Conversation, bool)> {
        let mut row = ConversationRow::of(fresh)?;
        row.message_count = 0;
        self.run(move |conn| open(conn, &row)).await
    }

    async fn find_conversation(
        &self,
        agent: &AgentId,
        session_key: &str,
    ) -> Result<Option<Conversation>> {
        let (agent, session_key) = (agent.to_string(), session_key.to_owned());
        self.run(move |conn| {
            let found = find(conn, &agent, &session_key).map_err(query_error)?;
            found.map(Conversation::try_from).transpose()
        })
        .await
    }

    async fn get_conversation(&self, id: &str) -> Result<Conversation> {
        let id = id.to_owned();
        self.run(move |conn| {
            let found = conversations::table
                .find(&id)
                .select(ConversationRow::as_select())
                .first(conn);
            found.map_err(|e| other(e, "conversation", &id))?.try_into()
        })
        .await
    }

    async fn list_conversations(
        &self,
        agents: Option<&[AgentId]>,
        page: Page,
    ) -> Result<Paged<Conversation>> {
        let agents: Option<Vec<String>> =
            agents.map(|ids| ids.iter().map(ToString::to_string).collect());
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| list_rows(c, agents.as_deref(), page))
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(Conversation::try_from)
                .collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }

    async fn delete_conversation(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            // Its messages go with it (ON DELETE CASCADE).
            let deleted = diesel::delete(conversations::table.find(&id)).execute(conn);
            deleted
                .map(|n| n > 0)
                .map_err(|e| other(e, "conversation", &id))
        })
        .await
    }

    async fn append_messages(&self, messages: &[Message]) -> Result<()> {
        self.append_batch(messages, None).await.map(|_| ())
    }

    async fn append_messages_if(&self, messages: &[Message], expected: u64) -> Result<bool> {
        let expected = i64::try_from(expected)
            .map_err(|_| Error::Internal("message count out of range".into()))?;
        self.append_batch(messages, Some(expected)).await
    }

    async fn start_conversation(
        &self,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()> {
        all_of(messages, &conversation.id, &conversation.agent_id)?;
        let row = ConversationRow::of(conversation)?;
        let rows = messages
            .iter()
            .map(MessageRow::try_from)
            .collect::<Result<Vec<_>>>()?;
        self.grouped(Start { row, rows }).await.map(|_| ())
    }

    async fn get_message(&self, id: &str) -> Result<Option<Message>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let row = messages::table
                .find(&id)
                .select(MessageRow::as_select())
                .first(conn)
                .optional()
                .map_err(query_error)?;
            row.map(Message::try_from).transpose()
        })
        .await
    }

    async fn last_messages(&self, conversation_id: &str, limit: u32) -> Result<Vec<Message>> {
        let conversation = conversation_id.to_owned();
        self.run(move |conn| {
            let rows = messages::table
                .filter(messages::conversation_id.eq(&conversation))
                .select(MessageRow::as_select())
                .order((messages::created_at.desc(), messages::id.desc()))
                .limit(i64::from(limit))
                .load(conn)
                .map_err(query_error)?;
            oldest_first(rows)
        })
        .await
    }

    async fn query_messages(&self, query: &MessageQuery) -> Result<Vec<Message>> {
        let query = query.clone();
        self.run(move |conn| {
            let rows = matching_messages(&query)
                .select(MessageRow::as_select())
                .order((messages::created_at.desc(), messages::id.desc()))
                .limit(i64::from(query.limit))
                .load(conn)
                .map_err(query_error)?;
            oldest_first(rows)
        })
        .await
    }
}

/// Checks that messages stored together all belong to one conversation of one agent.
fn all_of(messages: &[Message], conversation: &str, agent: &AgentId) -> Result<()> {
    match messages
        .iter()
        .find(|m| m.conversation_id != conversation || &m.agent_id != agent)
    {
        Some(stray) => Err(Error::Internal(format!(
            "messages stored together must share one conversation and agent: '{}' of \
             conversation '{}' (agent '{}') is not of conversation '{conversation}' (agent \
             '{agent}')",
            stray.id, stray.conversation_id, stray.agent_id
        ))),
        None => Ok(()),
    }
}

/// Messages to append, checked and converted.
struct Batch {
    conversation: String,
    agent: String,
    /// How many.
    added: i64,
    /// Store only while the conversation holds this many messages.
    expected: Option<i64>,
    /// The time of the last one.
    updated_at: NaiveDateTime,
    rows: Vec<MessageRow>,
}

impl Write for Batch {
    fn now(&self, conn: &mut AnyConnection) -> Result<bool> {
        // No transaction of its own: the group commit runs each write in one.
        if !raise_count(conn, self).map_err(|e| self.error(e))? {
            return Ok(false);
        }
        insert_messages(conn, &self.rows).map_err(|e| self.error(AppendError::Db(e)))?;
        Ok(true)
    }

    fn batched(&self, conn: &mut AnyConnection, later: &mut Later) -> Result<bool> {
        let raised = raise_count(conn, self).map_err(|e| self.error(e))?;
        if raised {
            later.messages(&self.rows);
        }
        Ok(raised)
    }
}

impl Batch {
    /// The port's error for a failed append.
    fn error(&self, e: AppendError) -> Error {
        match e {
            AppendError::Port(e) => e,
            AppendError::Db(e) if is_missing_reference(&e) => {
                Error::not_found("conversation", &self.conversation)
            }
            AppendError::Db(e) if conflict_on(&e).is_some() => Error::conflict(
                "id",
                format!(
                    "a message appended to conversation '{}' has an id that is taken",
                    self.conversation
                ),
            ),
            AppendError::Db(e) => query_error(e),
        }
    }
}

/// A new conversation with its first messages.
struct Start {
    row: ConversationRow,
    rows: Vec<MessageRow>,
}

impl Write for Start {
    fn now(&self, conn: &mut AnyConnection) -> Result<bool> {
        let stored = insert_conversations(conn, std::slice::from_ref(&self.row))
            .and_then(|_| insert_messages(conn, &self.rows));
        let row = &self.row;
        stored.map_err(|e| {
            if is_missing_reference(&e) {
                return Error::not_found("agent", &row.agent_id);
            }
            match conflict_on(&e) {
                Some("session_key") => Error::conflict(
                    "session_id",
                    format!(
                        "agent '{}' already has a conversation with session '{}'",
                        row.agent_id, row.session_key
                    ),
                ),
                Some(_) => Error::conflict(
                    "id",
                    format!(
                        "conversation '{}' or one of its messages has an id that is taken",
                        row.id
                    ),
                ),
                None => query_error(e),
            }
        })?;
        Ok(true)
    }

    fn batched(&self, _: &mut AnyConnection, later: &mut Later) -> Result<bool> {
        later.conversation(&self.row);
        later.messages(&self.rows);
        Ok(true)
    }
}

/// Raises the conversation's count (only from `expected` when set) for the messages of
/// `batch`, which are stored after it; run in a transaction. `Ok(false)`: the count was not
/// `expected`, nothing changed.
fn raise_count(conn: &mut AnyConnection, batch: &Batch) -> Result<bool, AppendError> {
    // The first statement writes, so SQLite takes the write lock up front.
    let set = (
        conversations::message_count.eq(conversations::message_count + batch.added),
        conversations::updated_at.eq(batch.updated_at),
    );
    let owner: Option<String> = match batch.expected {
        Some(expected) => on_backend!(&mut *conn, |c| diesel::update(
            conversations::table
                .filter(conversations::id.eq(&batch.conversation))
                .filter(conversations::message_count.eq(expected)),
        )
        .set(set)
        .returning(conversations::agent_id)
        .get_result(c)
        .optional())?,
        None => on_backend!(&mut *conn, |c| diesel::update(
            conversations::table.find(&batch.conversation)
        )
        .set(set)
        .returning(conversations::agent_id)
        .get_result(c)
        .optional())?,
    };
    match owner {
        None if batch.expected.is_some() && exists(conn, &batch.conversation)? => Ok(false),
        None => Err(AppendError::Port(Error::not_found(
            "conversation",
            &batch.conversation,
        ))),
        Some(owner) if owner != batch.agent => Err(AppendError::Port(Error::Internal(format!(
            "conversation '{}' belongs to agent '{owner}', not to the messages' agent '{}'",
            batch.conversation, batch.agent
        )))),
        Some(_) => Ok(true),
    }
}

/// Whether the conversation exists.
fn exists(conn: &mut AnyConnection, id: &str) -> QueryResult<bool> {
    let n: i64 = conversations::table
        .filter(conversations::id.eq(id))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Why [`ConversationStore::append_messages`] rolled back.
enum AppendError {
    /// A statement failed.
    Db(DieselError),
    /// The conversation is not there, or not the messages' agent's.
    Port(Error),
}

impl From<DieselError> for AppendError {
    fn from(error: DieselError) -> Self {
        Self::Db(error)
    }
}

/// The conversation of `row`'s agent and session key, inserted as `row` when there is none.
fn open(conn: &mut AnyConnection, row: &ConversationRow) -> Result<(Conversation, bool)> {
    for _ in 0..OPEN_ATTEMPTS {
        if let Some(found) = find(conn, &row.agent_id, &row.session_key).map_err(query_error)? {
            return Ok((found.try_into()?, false));
        }
        let inserted = diesel::insert_into(conversations::table)
            .values(row)
            .returning(conversations::all_columns)
            .get_result::<ConversationRow>(conn);
        let error = match inserted {
            Ok(stored) => return Ok((stored.try_into()?, true)),
            Err(error) => error,
        };
        if is_missing_reference(&error) {
            return Err(Error::not_found("agent", &row.agent_id));
        }
        match conflict_on(&error) {
            // Another call inserted the same agent and key first: read theirs.
            Some("session_key") => {}
            // The id is taken: by a concurrent call for the same agent and key (with the
            // same id), or by another conversation.
            Some(_) => {
                let found = find(conn, &row.agent_id, &row.session_key).map_err(query_error)?;
                return match found {
                    Some(found) => Ok((found.try_into()?, false)),
                    None => Err(Error::conflict(
                        "id",
                        format!("a conversation with id '{}' already exists", row.id),
                    )),
                };
            }
            None => return Err(query_error(error)),
        }
    }
    Err(Error::Internal(format!(
        "conversation '{}' of agent '{}' was deleted while being opened, {OPEN_ATTEMPTS} times",
        row.session_key, row.agent_id
    )))
}

fn find(
    conn: &mut AnyConnection,
    agent: &str,
    session_key: &str,
) -> QueryResult<Option<ConversationRow>> {
    conversations::table
        .filter(conversations::agent_id.eq(agent))
        .filter(conversations::session_key.eq(session_key))
        .select(ConversationRow::as_select())
        .first(conn)
        .optional()
}

/// The number of matches and one page of them, most recently updated first.
fn list_rows(
    conn: &mut AnyConnection,
    agents: Option<&[String]>,
    page: Page,
) -> QueryResult<(i64, Vec<ConversationRow>)> {
    let total = of_agents(agents).count().get_result(conn)?;
    let rows = of_agents(agents)
        .select(ConversationRow::as_select())
        .order((conversations::updated_at.desc(), conversations::id.desc()))
        .limit(i64::from(page.limit()))
        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
        .load(conn)?;
    Ok((total, rows))
}

fn of_agents(agents: Option<&[String]>) -> conversations::BoxedQuery<'_, MultiBackend> {
    let mut query = conversations::table.into_boxed();
    match agents {
        Some([agent]) => query = query.filter(conversations::agent_id.eq(agent)),
        Some(agents) => query = query.filter(conversations::agent_id.eq_any(agents)),
        None => {}
    }
    query
}

/// The messages of the query's agent, of its conversation with the session key when one is
/// given, stored strictly before `before` when given.
fn matching_messages(query: &MessageQuery) -> messages::BoxedQuery<'_, MultiBackend> {
    let mut found = messages::table
        .into_boxed()
        .filter(messages::agent_id.eq(query.agent_id.as_str()));
    if let Some(session_key) = &query.session_key {
        let conversation = conversations::table
            .filter(conversations::agent_id.eq(query.agent_id.as_str()))
            .filter(conversations::session_key.eq(session_key.as_str()))
            .select(conversations::id);
        found = found.filter(messages::conversation_id.eq_any(conversation));
    }
    if let Some(before) = query.before {
        found = found.filter(messages::created_at.lt(before.naive_utc()));
    }
    found
}

/// Rows read newest first, as messages oldest first.
fn oldest_first(rows: Vec<MessageRow>) -> Result<Vec<Message>> {
    rows.into_iter().rev().map(Message::try_from).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::DateTime;

    use super::*;

    fn row(id: &str) -> MessageRow {
        MessageRow {
            id: id.to_owned(),
            conversation_id: "c".to_owned(),
            agent_id: "a".to_owned(),
            role: "user".to_owned(),
            content: format!("text of {id}"),
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            latency_ms: None,
            provider_id: None,
            model_name: None,
            agent_version: None,
            status: "complete".to_owned(),
            created_at: DateTime::UNIX_EPOCH.naive_utc(),
            tool_calls: None,
            tool_call_id: None,
            annotations: None,
        }
    }

    /// Messages go in several to a statement: 5 rows as 4 + 1, then 4 more from the cached
    /// statement of 4; every row is stored once.
    #[test]
    fn messages_are_inserted_several_to_a_cached_statement() {
        let (conn, prepared) = crate::database::counted_sqlite();
        let mut conn = AnyConnection::Sqlite(conn);
        let rows: Vec<MessageRow> = (0..9).map(|i| row(&format!("m{i}"))).collect();
        assert_eq!(insert_messages(&mut conn, &rows[..5]).unwrap(), 5);
        assert_eq!(insert_messages(&mut conn, &rows[5..]).unwrap(), 4);
        assert_eq!(insert_messages(&mut conn, &[]).unwrap(), 0);
        let counted = prepared.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(counted, 2, "one statement for 4 rows, one for a single row");
        let stored: Vec<String> = on_backend!(&mut conn, |c| messages::table
            .select(messages::id)
            .order(messages::id)
            .load(c))
        .unwrap();
        let expected: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
        assert_eq!(stored, expected);
    }

    fn conversation(id: &str, session_key: &str) -> ConversationRow {
        ConversationRow {
            id: id.to_owned(),
            agent_id: "a".to_owned(),
            session_key: session_key.to_owned(),
            context: "{}".to_owned(),
            message_count: 2,
            created_at: DateTime::UNIX_EPOCH.naive_utc(),
            updated_at: DateTime::UNIX_EPOCH.naive_utc(),
            created_by: None,
        }
    }

    /// A new conversation `c{i}` with session key `key` and two messages.
    fn start(i: usize, key: &str) -> Start {
        let id = format!("c{i}");
        let message = |n: usize| MessageRow {
            conversation_id: id.clone(),
            ..row(&format!("c{i}m{n}"))
        };
        Start {
            rows: vec![message(0), message(1)],
            row: conversation(&id, key),
        }
    }

    /// Commits `writes` as one batch on `conn`: each write's answer.
    fn commit_all(conn: &mut AnyConnection, writes: Vec<Box<dyn Write>>) -> Vec<Result<bool>> {
        let (batch, answers): (Vec<_>, Vec<_>) = writes
            .into_iter()
            .map(|w| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                ((w, tx), rx)
            })
            .unzip();
        crate::group_commit::commit_on(conn, batch);
        answers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().0)
            .collect()
    }

    /// A batch of new conversations goes in as a few multi-row inserts, not two statements a
    /// turn: ten turns are conversations in 8 + 2 rows and messages in 16 + 4. A write that
    /// fails among them (its session key is taken) makes the batch run again write by write,
    /// and fails alone.
    #[test]
    fn a_batch_of_turns_is_stored_in_a_few_inserts() {
        let (conn, _, run) = crate::database::instrumented_sqlite();
        let mut conn = AnyConnection::Sqlite(conn);
        let writes = (0..10).map(|i| Box::new(start(i, &format!("k{i}"))) as Box<dyn Write>);
        let answers = commit_all(&mut conn, writes.collect());
        assert!(answers.iter().all(|a| matches!(a, Ok(true))), "{answers:?}");
        let inserts = |run: &std::sync::Mutex<Vec<String>>| {
            let run = run.lock().unwrap();
            run.iter().filter(|sql| sql.starts_with("INSERT")).count()
        };
        assert_eq!(inserts(&run), 4, "{:?}", run.lock().unwrap());

        let taken = 12;
        let writes = (10..15)
            .map(|i| {
                let key = if i == taken {
                    "k3".to_owned()
                } else {
                    format!("k{i}")
                };
                Box::new(start(i, &key)) as Box<dyn Write>
            })
            .collect();
        let answers = commit_all(&mut conn, writes);
        for (i, answer) in (10..).zip(&answers) {
            if i == taken {
                assert!(
                    matches!(answer, Err(Error::Conflict { field: Some(f), .. }) if f == "session_id"),
                    "{answer:?}"
                );
            } else {
                assert!(matches!(answer, Ok(true)), "write {i}: {answer:?}");
            }
        }
        let stored: i64 = conversations::table.count().get_result(&mut conn).unwrap();
        assert_eq!(stored, 14);
        let stored: i64 = messages::table.count().get_result(&mut conn).unwrap();
        assert_eq!(stored, 28);
    }

    /// Turns the next foreign-key checks of the transaction it runs in to the commit.
    struct DeferForeignKeys;

    impl Write for DeferForeignKeys {
        fn now(&self, conn: &mut AnyConnection) -> Result<bool> {
            diesel::connection::SimpleConnection::batch_execute(
                conn,
                "PRAGMA defer_foreign_keys = ON",
            )
            .map_err(query_error)?;
            Ok(true)
        }
    }

    /// When the commit itself fails (here a foreign key checked only then: the turns'
    /// agent does not exist), nothing of the batch is stored and every write is told so.
    #[test]
    fn a_failed_commit_fails_every_write_of_the_batch() {
        let (conn, _, _) = crate::database::instrumented_sqlite();
        let mut conn = AnyConnection::Sqlite(conn);
        diesel::connection::SimpleConnection::batch_execute(&mut conn, "PRAGMA foreign_keys = ON")
            .unwrap();
        let writes: Vec<Box<dyn Write>> = vec![
            Box::new(DeferForeignKeys),
            Box::new(start(0, "k0")),
            Box::new(start(1, "k1")),
        ];
        for answer in commit_all(&mut conn, writes) {
            assert!(
                matches!(&answer, Err(Error::Unavailable(m)) if m.contains("FOREIGN KEY")),
                "{answer:?}"
            );
        }
        let stored: i64 = conversations::table.count().get_result(&mut conn).unwrap();
        assert_eq!(stored, 0);
        let stored: i64 = messages::table.count().get_result(&mut conn).unwrap();
        assert_eq!(stored, 0);
    }
}
