-- One counter shared by every replica: bumped after each change to cached data (agents,
-- versions, providers, users, sessions, API keys) and polled by each server to empty its
-- in-process caches when another replica changed something.
CREATE TABLE change_counter (
    id INTEGER PRIMARY KEY,
    counter BIGINT NOT NULL
);
INSERT INTO change_counter (id, counter) VALUES (1, 0);
