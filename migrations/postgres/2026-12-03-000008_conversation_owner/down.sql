ALTER TABLE conversations DROP COLUMN created_by;
