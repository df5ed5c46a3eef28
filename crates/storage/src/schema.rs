//! The tables, in column types both backends share (ids and JSON as `Text`).
//! Must match `migrations/sqlite` and `migrations/postgres`.

diesel::table! {
    agents (id) {
        id -> Text,
        key -> Text,
        name -> Text,
        description -> Nullable<Text>,
        instructions -> Text,
        provider_id -> Text,
        model_name -> Text,
        temperature -> Nullable<Double>,
        top_p -> Nullable<Double>,
        max_tokens -> Nullable<Integer>,
        tags -> Text,
        status -> Text,
        agent_type -> Text,
        tools -> Text,
        cluster -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    agent_tags (agent_id, tag) {
        agent_id -> Text,
        tag -> Text,
    }
}

diesel::table! {
    providers (id) {
        id -> Text,
        kind -> Text,
        base_url -> Nullable<Text>,
        api_key -> Nullable<Text>,
        models -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(agent_tags -> agents (agent_id));
diesel::allow_tables_to_appear_in_same_query!(agents, agent_tags, providers);
