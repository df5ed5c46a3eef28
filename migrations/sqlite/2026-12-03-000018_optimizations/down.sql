DROP TABLE optimizations;
ALTER TABLE agent_versions DROP COLUMN draft;
