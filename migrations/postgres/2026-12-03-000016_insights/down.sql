DROP TABLE insight_issue_days;
DROP TABLE insight_days;
DROP TABLE conversation_analyses;
