ALTER TABLE agents DROP COLUMN fallback_model_name;
ALTER TABLE agents DROP COLUMN fallback_provider_id;
