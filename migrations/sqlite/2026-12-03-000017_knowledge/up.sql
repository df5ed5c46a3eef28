-- Knowledge (RAG): an agent's knowledge setting (a JSON object {"files": [...], "top_k",
-- "max_context_chars"}; NULL when it has none), and the chunks of files' extracted text, the
-- source of truth the full-text index (a folder under the data folder) is rebuilt from.
ALTER TABLE agents ADD COLUMN knowledge TEXT NULL;
CREATE TABLE knowledge_chunks (
    file_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    CONSTRAINT knowledge_chunks_pkey PRIMARY KEY (file_id, position)
);
