ALTER TABLE messages DROP COLUMN annotations;
ALTER TABLE agents DROP COLUMN guardrails;
