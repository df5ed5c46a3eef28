//! Text extraction: plain text and Markdown as they are, CSV as its text, JSON as
//! `path: value` lines, HTML and XML without their markup (scripts and styles dropped,
//! entities decoded), PDF through `pdf-extract` (pure Rust; a panic inside it is caught and
//! reported as a failure).

use agentry_domain::knowledge::TextExtractor;
use serde_json::Value;

/// The extractor of the formats above.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extractor;

const SUPPORTED: &[&str] = &[
    "text/plain",
    "text/markdown",
    "text/csv",
    "text/html",
    "application/json",
    "application/xml",
    "application/pdf",
];

impl TextExtractor for Extractor {
    fn supports(&self, content_type: &str) -> bool {
        SUPPORTED.contains(&base_type(content_type))
    }

    fn extract(&self, content_type: &str, bytes: &[u8]) -> Result<String, String> {
        match base_type(content_type) {
            "application/pdf" => pdf(bytes),
            "text/html" | "application/xml" => Ok(strip_markup(&String::from_utf8_lossy(bytes))),
            "application/json" => {
                let text = String::from_utf8_lossy(bytes);
                Ok(match serde_json::from_str::<Value>(&text) {
                    Ok(v) => {
                        let mut out = String::new();
                        flatten(&v, "", &mut out);
                        out
                    }
                    Err(_) => text.into_owned(),
                })
            }
            "text/plain" | "text/markdown" | "text/csv" => {
                Ok(String::from_utf8_lossy(bytes).into_owned())
            }
            other => Err(format!("no text is extracted from '{other}' files")),
        }
    }
}

fn base_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

fn pdf(bytes: &[u8]) -> Result<String, String> {
    let owned = bytes.to_vec();
    let result = std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem(&owned));
    match result {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(format!("the PDF could not be read: {e}")),
        Err(_) => Err("the PDF could not be read (its structure is not supported)".to_owned()),
    }
}

/// `a.b[0]: value` lines of a JSON value (strings, numbers and booleans).
fn flatten(v: &Value, path: &str, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::Null => {}
        Value::String(s) => push_line(out, path, s),
        other => push_line(out, path, &other.to_string()),
    }
}

fn push_line(out: &mut String, path: &str, value: &str) {
    if !path.is_empty() {
        out.push_str(path);
        out.push_str(": ");
    }
    out.push_str(value);
    out.push('\n');
}

/// Elements whose content is not text.
const SKIPPED: &[&str] = &["script", "style", "noscript", "svg", "template", "head"];
/// Elements that end a line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "title",
    "pre",
    "blockquote",
    "dt",
    "dd",
    "td",
    "th",
];

/// The text of HTML or XML: tags removed (block elements end lines), the content of
/// scripts, styles and the head dropped (except the title), comments dropped, entities
/// decoded.
pub fn strip_markup(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skipping: Option<String> = None;
    while let Some(lt) = rest.find('<') {
        if skipping.is_none() {
            out.push_str(&decode_entities(&rest[..lt]));
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(skipped) = &skipping {
            if closing && &name == skipped {
                skipping = None;
            } else if name == "title" && !closing && skipped == "head" {
                // The title is text even inside the head.
                if let Some(end) = rest.to_ascii_lowercase().find("</title") {
                    out.push_str(&decode_entities(&rest[..end]));
                    out.push('\n');
                }
            }
            continue;
        }
        if !closing && !tag.ends_with('/') && SKIPPED.contains(&name.as_str()) {
            skipping = Some(name);
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            out.push('\n');
        } else {
            out.push(' ');
        }
    }
    if skipping.is_none() {
        out.push_str(&decode_entities(rest));
    }
    out
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn html_loses_its_markup() {
        let html = "<!DOCTYPE html><html><head><title>Refunds &amp; returns</title>\
            <style>p{color:red}</style><script>var x = '<p>';</script></head>\
            <body><!-- hidden --><h1>Policy</h1><p>Refunds take <b>14</b>&nbsp;days.</p></body></html>";
        let text = strip_markup(html);
        assert!(text.contains("Refunds & returns"), "{text}");
        assert!(text.contains("Refunds take  14  days."), "{text}");
        assert!(!text.contains("color"), "{text}");
        assert!(!text.contains("var x"), "{text}");
        assert!(!text.contains("hidden"), "{text}");
    }

    #[test]
    fn formats() {
        let x = Extractor;
        assert!(x.supports("text/markdown"));
        assert!(x.supports("application/pdf"));
        assert!(!x.supports("image/png"));
        let json = x
            .extract(
                "application/json",
                br#"{"plan": {"name": "Pro", "seats": [5, 10]}}"#,
            )
            .unwrap();
        assert!(json.contains("plan.name: Pro"), "{json}");
        assert!(json.contains("plan.seats[1]: 10"), "{json}");
        assert_eq!(x.extract("text/csv", b"a,b\n1,2\n").unwrap(), "a,b\n1,2\n");
        assert!(x.extract("application/pdf", b"%PDF-1.4 broken").is_err());
        assert!(x.extract("image/png", b"x").is_err());
    }
}
