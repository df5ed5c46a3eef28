-- Conversation analyses (docs/insights.md): one row per analysed conversation, of the
-- conversation up to `last_message_at`, with 0/1 columns beside `outcome` and `sentiment`.
-- Rows stay when their conversation is deleted (they hold no text of it).

CREATE TABLE conversation_analyses (
    conversation_id TEXT NOT NULL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    completed INTEGER NOT NULL,
    abandoned INTEGER NOT NULL,
    escalated INTEGER NOT NULL,
    task_completed INTEGER NOT NULL,
    sentiment DOUBLE PRECISION NOT NULL,
    positive INTEGER NOT NULL,
    negative INTEGER NOT NULL,
    issues TEXT NOT NULL,
    analyser TEXT NOT NULL,
    message_count INTEGER NOT NULL,
    response_ms DOUBLE PRECISION,
    last_message_at TIMESTAMP NOT NULL,
    analysed_at TIMESTAMP NOT NULL
);

CREATE INDEX conversation_analyses_agent_idx ON conversation_analyses (agent_id, last_message_at);
CREATE INDEX conversation_analyses_analyser_idx ON conversation_analyses (analyser, analysed_at);

-- Daily roll-ups per agent, kept by every analysis written (its old contribution taken out,
-- the new one added, in one transaction): insights over any period read at most one row per
-- day and label, however many conversations there are. `day` is the UTC midnight of the
-- conversation's last message.
CREATE TABLE insight_days (
    agent_id TEXT NOT NULL,
    day TIMESTAMP NOT NULL,
    conversations INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    abandoned INTEGER NOT NULL,
    escalated INTEGER NOT NULL,
    task_completed INTEGER NOT NULL,
    positive INTEGER NOT NULL,
    negative INTEGER NOT NULL,
    sentiment_sum DOUBLE PRECISION NOT NULL,
    response_ms_sum DOUBLE PRECISION NOT NULL,
    responses INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (agent_id, day)
);

CREATE TABLE insight_issue_days (
    agent_id TEXT NOT NULL,
    day TIMESTAMP NOT NULL,
    label TEXT NOT NULL,
    conversations INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    PRIMARY KEY (agent_id, day, label)
);
