DROP TABLE tasks;
DROP TABLE event_payloads;
