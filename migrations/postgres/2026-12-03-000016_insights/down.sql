DROP TABLE conversation_issues;
DROP TABLE conversation_analyses;
