-- Clusters applied from AgentCluster manifests. The agents themselves live in `agents`
-- (their `cluster` column names the cluster); a cluster keeps its resource policy and its
-- members with their instances, as JSON (`policy`: {"max_concurrent_agents",
-- "idle_timeout_secs", "scale_to_zero"}; `members`: [{"key", "instances"}]).
-- `generation` grows with every change; updates name the generation they read.

CREATE TABLE clusters (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    api_version TEXT NOT NULL,
    policy TEXT NOT NULL,
    members TEXT NOT NULL,
    generation BIGINT NOT NULL,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
