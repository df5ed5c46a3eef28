DROP TABLE server_secrets;
DROP TABLE api_keys;
DROP TABLE refresh_tokens;
DROP TABLE auth_sessions;
DROP TABLE users;
