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
        fallback_provider_id -> Nullable<Text>,
        fallback_model_name -> Nullable<Text>,
        guardrails -> Nullable<Text>,
        knowledge -> Nullable<Text>,
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

diesel::table! {
    conversations (id) {
        id -> Text,
        agent_id -> Text,
        session_key -> Text,
        context -> Text,
        message_count -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        created_by -> Nullable<Text>,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        conversation_id -> Text,
        agent_id -> Text,
        role -> Text,
        content -> Text,
        prompt_tokens -> Nullable<Integer>,
        completion_tokens -> Nullable<Integer>,
        total_tokens -> Nullable<Integer>,
        latency_ms -> Nullable<BigInt>,
        provider_id -> Nullable<Text>,
        model_name -> Nullable<Text>,
        agent_version -> Nullable<Integer>,
        status -> Text,
        created_at -> Timestamp,
        tool_calls -> Nullable<Text>,
        tool_call_id -> Nullable<Text>,
        annotations -> Nullable<Text>,
    }
}

diesel::table! {
    runs (id) {
        id -> Text,
        preamble -> Text,
        prompt -> Text,
        provider_id -> Text,
        model_name -> Text,
        response -> Nullable<Text>,
        prompt_tokens -> Nullable<Integer>,
        completion_tokens -> Nullable<Integer>,
        total_tokens -> Nullable<Integer>,
        latency_ms -> BigInt,
        status -> Text,
        error -> Nullable<Text>,
        log_meta -> Text,
        user_id -> Nullable<Text>,
        session_id -> Nullable<Text>,
        component -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    agent_versions (agent_id, version) {
        agent_id -> Text,
        version -> Integer,
        snapshot -> Text,
        note -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        draft -> Integer,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        email -> Nullable<Text>,
        role -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    auth_sessions (id) {
        id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        prefix -> Text,
        secret_hash -> Text,
        scopes -> Text,
        agents -> Nullable<Text>,
        rate_limit_per_minute -> Nullable<Integer>,
        created_by -> Nullable<Text>,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    mcp_servers (id) {
        id -> Text,
        name -> Text,
        slug -> Text,
        transport -> Text,
        command -> Nullable<Text>,
        args -> Nullable<Text>,
        env -> Nullable<Text>,
        url -> Nullable<Text>,
        headers -> Nullable<Text>,
        capabilities -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        tools -> Text,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        title -> Text,
        description -> Nullable<Text>,
        agent_id -> Text,
        agent_key -> Text,
        priority -> Text,
        priority_rank -> Integer,
        data -> Text,
        status -> Text,
        idempotency_scope -> Text,
        idempotency_key -> Nullable<Text>,
        max_attempts -> Integer,
        attempts -> Integer,
        run_at -> Timestamp,
        result -> Nullable<Text>,
        error -> Nullable<Text>,
        created_by -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    rate_usage (client_key, window_start) {
        client_key -> Text,
        window_start -> Timestamp,
        count -> BigInt,
    }
}

diesel::table! {
    event_payloads (id) {
        id -> Text,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    clusters (id) {
        id -> Text,
        name -> Text,
        namespace -> Text,
        api_version -> Text,
        policy -> Text,
        members -> Text,
        generation -> BigInt,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    change_counter (id) {
        id -> Integer,
        counter -> BigInt,
    }
}

diesel::table! {
    testsets (id) {
        id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        cases -> Text,
        case_count -> BigInt,
        revision -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    eval_runs (id) {
        id -> Text,
        testset_id -> Text,
        testset_name -> Text,
        status -> Text,
        configurations -> Text,
        cases -> Text,
        concurrency -> Integer,
        repeats -> Integer,
        judge -> Nullable<Text>,
        total -> BigInt,
        error -> Nullable<Text>,
        created_by -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        attempts -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    optimizations (id) {
        id -> Text,
        agent_id -> Text,
        testset_id -> Text,
        status -> Text,
        phase -> Nullable<Text>,
        request -> Text,
        progress -> Text,
        draft_version -> Nullable<Integer>,
        error -> Nullable<Text>,
        created_by -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        attempts -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    eval_results (run_id, configuration, case_id, repetition) {
        run_id -> Text,
        configuration -> Integer,
        case_id -> Text,
        repetition -> Integer,
        passed -> Integer,
        output -> Text,
        verdicts -> Text,
        error -> Nullable<Text>,
        latency_ms -> BigInt,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        model -> Nullable<Text>,
        tool_calls -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    conversation_analyses (conversation_id) {
        conversation_id -> Text,
        agent_id -> Text,
        outcome -> Text,
        completed -> Integer,
        abandoned -> Integer,
        escalated -> Integer,
        task_completed -> Integer,
        sentiment -> Double,
        positive -> Integer,
        negative -> Integer,
        issues -> Text,
        analyser -> Text,
        message_count -> Integer,
        response_ms -> Nullable<Double>,
        last_message_at -> Timestamp,
        analysed_at -> Timestamp,
    }
}

diesel::table! {
    insight_days (agent_id, day) {
        agent_id -> Text,
        day -> Timestamp,
        conversations -> Integer,
        completed -> Integer,
        abandoned -> Integer,
        escalated -> Integer,
        task_completed -> Integer,
        positive -> Integer,
        negative -> Integer,
        sentiment_sum -> Double,
        response_ms_sum -> Double,
        responses -> Integer,
        messages -> Integer,
    }
}

diesel::table! {
    insight_issue_days (agent_id, day, label) {
        agent_id -> Text,
        day -> Timestamp,
        label -> Text,
        conversations -> Integer,
        failed -> Integer,
    }
}

diesel::joinable!(agent_tags -> agents (agent_id));
diesel::joinable!(conversation_analyses -> conversations (conversation_id));
diesel::joinable!(agent_versions -> agents (agent_id));
diesel::joinable!(auth_sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> auth_sessions (session_id));
diesel::joinable!(api_keys -> users (created_by));
diesel::joinable!(conversations -> agents (agent_id));
diesel::table! {
    files (id) {
        id -> Text,
        filename -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        sha256 -> Text,
        metadata -> Text,
        status -> Text,
        status_reason -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    knowledge_chunks (file_id, position) {
        file_id -> Text,
        position -> Integer,
        text -> Text,
        embedding_model -> Nullable<Text>,
        embedding -> Nullable<Binary>,
    }
}

diesel::joinable!(messages -> conversations (conversation_id));
diesel::allow_tables_to_appear_in_same_query!(
    agents,
    files,
    knowledge_chunks,
    agent_tags,
    agent_versions,
    providers,
    conversations,
    messages,
    runs,
    users,
    auth_sessions,
    refresh_tokens,
    api_keys,
    server_secrets,
    mcp_servers,
    tasks,
    event_payloads,
    rate_usage,
    clusters,
    testsets,
    eval_runs,
    eval_results,
    optimizations,
    conversation_analyses,
    insight_days,
    insight_issue_days,
    change_counter
);
