-- Guardrails per agent (a JSON object {"input": [...], "output": [...], "refusal_message"};
-- NULL when the agent has none), and what a turn notes on its answer (a JSON object such as
-- {"guardrails": [...]}; NULL when nothing).
ALTER TABLE agents ADD COLUMN guardrails TEXT NULL;
ALTER TABLE messages ADD COLUMN annotations TEXT NULL;
