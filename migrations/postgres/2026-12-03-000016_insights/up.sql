-- Conversation analyses (docs/insights.md): one row per analysed conversation, of the
-- conversation up to `last_message_at`; the 0/1 columns beside `outcome` and `sentiment` let
-- insights aggregate with plain sums. Issue labels are rows of their own, so that the most
-- frequent are counted by the database. Rows stay when their conversation is deleted (they
-- hold no text of it).

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

CREATE TABLE conversation_issues (
    conversation_id TEXT NOT NULL,
    label TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    failed INTEGER NOT NULL,
    last_message_at TIMESTAMP NOT NULL,
    PRIMARY KEY (conversation_id, label)
);

CREATE INDEX conversation_issues_agent_idx ON conversation_issues (agent_id, last_message_at);
