//! Small text validators shared by the newtypes.

use crate::error::Invalid;

/// Checks a free-text value: trimmed length between `min` and `max` characters, no control
/// characters other than newlines and tabs when `multiline`.
///
/// # Errors
/// [`Invalid`] naming `field`.
pub fn check_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<(), Invalid> {
    let len = value.chars().count();
    if value.trim().chars().count() < min {
        return Err(Invalid::new(
            field,
            if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must be at least {min} characters")
            },
        ));
    }
    if len > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    let bad = value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if bad {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a slug: 1 to `max` characters from `a-z`, `0-9`, `-`, `_` and `.`, starting with a
/// letter or a digit.
///
/// # Errors
/// [`Invalid`] naming `field`.
pub fn check_slug(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    let ok_first = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if value.is_empty() || value.len() > max || !ok_first || !ok_rest {
        return Err(Invalid::new(
            field,
            format!(
                "must be 1 to {max} characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Checks a handle a caller chooses for something that also has a generated id (an agent's
/// key, an MCP server's slug): a slug as [`check_slug`] says, never starting with `id_prefix`
/// (`agent_`, `mcp_`), so that a handle is never mistaken for an id.
///
/// # Errors
/// [`Invalid`] naming `field`.
pub fn check_handle(field: &str, value: &str, max: usize, id_prefix: &str) -> Result<(), Invalid> {
    check_slug(field, value, max)?;
    if value.starts_with(id_prefix) {
        return Err(Invalid::new(
            field,
            format!("must not start with '{id_prefix}' (reserved for ids)"),
        ));
    }
    Ok(())
}

/// The handle derived from a display name: `Customer Support` → `customer-support`.
/// [`slugify`] keeps only letters, digits and `-`, so the result never carries an id's
/// `…_` prefix.
///
/// # Errors
/// [`Invalid`] naming `field` when the name has no letters or digits to build one from.
pub fn handle_from_name(field: &str, name: &str, max: usize) -> Result<String, Invalid> {
    let slug = slugify(name, max);
    check_slug(field, &slug, max).map_err(|_| {
        Invalid::new(
            field,
            format!("cannot be derived from the name: give a {field} explicitly"),
        )
    })?;
    Ok(slug)
}

/// Turns a display name into a slug: lowercase ASCII letters and digits, other runs of
/// characters become one `-`. Returns an empty string when nothing usable remains.
pub fn slugify(name: &str, max: usize) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_names() {
        assert_eq!(slugify("Customer Support", 64), "customer-support");
        assert_eq!(
            slugify("  technical-support-agent ", 64),
            "technical-support-agent"
        );
        assert_eq!(slugify("Ünïcode   Bot!!", 64), "n-code-bot");
        assert_eq!(slugify("***", 64), "");
        assert_eq!(slugify("abcdef", 3), "abc");
    }

    #[test]
    fn slugs() {
        assert!(check_slug("key", "support-bot", 64).is_ok());
        assert!(check_slug("key", "gpt-4.1_mini", 64).is_ok());
        assert!(check_slug("key", "Support", 64).is_err());
        assert!(check_slug("key", "-x", 64).is_err());
        assert!(check_slug("key", "", 64).is_err());
        assert!(check_slug("key", "a b", 64).is_err());
    }

    #[test]
    fn texts() {
        assert!(check_text("name", "ok", 1, 10, false).is_ok());
        assert!(check_text("name", "   ", 1, 10, false).is_err());
        assert!(check_text("name", "12345678901", 1, 10, false).is_err());
        assert!(check_text("name", "a\u{0}b", 1, 10, false).is_err());
        assert!(check_text("body", "a\nb", 1, 10, true).is_ok());
        assert!(check_text("name", "a\nb", 1, 10, false).is_err());
    }
}
