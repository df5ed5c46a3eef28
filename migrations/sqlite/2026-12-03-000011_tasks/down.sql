DROP TABLE tasks;
DROP TABLE event_payloads;
DROP TABLE rate_usage;
