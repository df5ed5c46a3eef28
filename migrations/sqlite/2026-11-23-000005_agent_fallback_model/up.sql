-- An optional fallback model per agent, tried when the primary provider fails.
ALTER TABLE agents ADD COLUMN fallback_provider_id TEXT NULL;
ALTER TABLE agents ADD COLUMN fallback_model_name TEXT NULL;
