DROP TABLE runs;
DROP TABLE messages;
DROP TABLE conversations;
