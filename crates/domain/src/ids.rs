//! Prefixed, time-sortable identifiers (`agent_…`, `conv_…`, `msg_…`).

use uuid::Uuid;

/// A new identifier: `prefix`, an underscore, then a UUIDv7 in lowercase hex.
/// UUIDv7 starts with the creation time, so ids sort by creation.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// Whether `value` has the shape of an id made by [`new_id`] with `prefix`: the prefix, an
/// underscore, then 32 lowercase hex digits.
pub fn is_id(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A newtype over an id made by [`new_id`]: `generate`, `parse` (an [`Invalid`] naming
/// `$field` for text of another shape), `as_str` and `Display`.
///
/// [`Invalid`]: crate::error::Invalid
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:expr, $field:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A fresh id.
            pub fn generate() -> Self {
                Self($crate::ids::new_id($prefix))
            }

            /// Accepts text that has the shape of such an id.
            ///
            /// # Errors
            #[doc = concat!("[`Invalid`](crate::error::Invalid) naming `", $field, "`.")]
            pub fn parse(value: &str) -> Result<Self, $crate::error::Invalid> {
                if $crate::ids::is_id(value, $prefix) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err($crate::error::Invalid::new($field, concat!("is not ", $what)))
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use prefixed_id;

#[cfg(test)]
mod tests {
    use super::{is_id, new_id};

    #[test]
    fn ids_are_prefixed_and_sort_by_creation() {
        let a = new_id("agent");
        let b = new_id("agent");
        assert!(a.starts_with("agent_"));
        assert_eq!(a.len(), "agent_".len() + 32);
        assert!(a < b, "{a} should sort before {b}");
        assert!(is_id(&a, "agent"));
        assert!(!is_id(&a, "task"));
        assert!(!is_id(&a.to_uppercase(), "AGENT"));
        assert!(!is_id("agent_123", "agent"));
    }
}
