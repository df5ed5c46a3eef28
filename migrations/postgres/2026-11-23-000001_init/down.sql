DROP TABLE providers;
DROP TABLE agent_tags;
DROP TABLE agents;
