-- Embeddings for hybrid ranking (docs/knowledge.md, decision 116): each chunk may carry the
-- vector of its text (little-endian f32s) and the model that computed it ("provider/model").
-- A chunk whose model differs from the configured one is embedded again; NULL: not embedded.
ALTER TABLE knowledge_chunks ADD COLUMN embedding_model TEXT NULL;
ALTER TABLE knowledge_chunks ADD COLUMN embedding BYTEA NULL;
