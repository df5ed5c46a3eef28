//! Prefixed, time-sortable identifiers (`agent_…`, `conv_…`, `msg_…`).

use uuid::Uuid;

/// A new identifier: `prefix`, an underscore, then a UUIDv7 in lowercase hex.
/// UUIDv7 starts with the creation time, so ids sort by creation.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::new_id;

    #[test]
    fn ids_are_prefixed_and_sort_by_creation() {
        let a = new_id("agent");
        let b = new_id("agent");
        assert!(a.starts_with("agent_"));
        assert_eq!(a.len(), "agent_".len() + 32);
        assert!(a < b, "{a} should sort before {b}");
    }
}
