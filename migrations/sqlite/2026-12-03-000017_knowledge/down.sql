DROP TABLE knowledge_chunks;
ALTER TABLE agents DROP COLUMN knowledge;
