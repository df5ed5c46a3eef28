DROP TABLE agent_versions;
