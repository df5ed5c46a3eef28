-- Uploaded files: their records (their bytes are in the blob store under `files/<id>`).
CREATE TABLE files (
    id TEXT NOT NULL PRIMARY KEY,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX files_created_at ON files (created_at);

