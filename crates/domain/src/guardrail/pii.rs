//! Personal data in text: e-mail addresses, phone numbers, payment card numbers (13 to 19
//! digits passing the Luhn check) and IBANs (passing the ISO 13616 mod-97 check). Phone
//! numbers are a heuristic: 7 to 15 digits with the usual separators, starting with `+` or
//! `(`, or at least 9 digits (so dates and short numbers are not taken for phones).

use std::sync::LazyLock;

use regex::Regex;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A payment card number.
    Card,
    /// An international bank account number.
    Iban,
}

impl PiiKind {
    /// Every kind.
    pub const ALL: [PiiKind; 4] = [Self::Email, Self::Phone, Self::Card, Self::Iban];

    /// Reads the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "phone" => Some(Self::Phone),
            "card" => Some(Self::Card),
            "iban" => Some(Self::Iban),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Card => "card",
            Self::Iban => "iban",
        }
    }

    /// What replaces it when redacted.
    pub fn placeholder(&self) -> &'static str {
        match self {
            Self::Email => "[EMAIL]",
            Self::Phone => "[PHONE]",
            Self::Card => "[CARD]",
            Self::Iban => "[IBAN]",
        }
    }
}

/// One piece of personal data found: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiiMatch {
    /// What it is.
    pub kind: PiiKind,
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
}

fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)\b[a-z0-9._%+-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}\b",
    )
});
static IBAN: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"));
static CARD: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"\b\d(?:[ -]?\d){12,18}\b"));
static PHONE: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"(?:\+|\(|\b)\d[\d ().-]{5,22}\d\b"));

/// The personal data of `kinds` in `text`, in order, without overlaps (IBANs and cards are
/// looked for first, so their digits are not also taken for phone numbers).
pub fn find_pii(text: &str, kinds: &[PiiKind]) -> Vec<PiiMatch> {
    let mut found: Vec<PiiMatch> = Vec::new();
    let add = |m: PiiMatch, found: &mut Vec<PiiMatch>| {
        if !found.iter().any(|f| m.start < f.end && f.start < m.end) {
            found.push(m);
        }
    };
    if kinds.contains(&PiiKind::Iban)
        && let Some(re) = IBAN.as_ref()
    {
        for m in re.find_iter(text) {
            if let Some(end) = valid_iban_end(m.as_str()) {
                add(
                    PiiMatch {
                        kind: PiiKind::Iban,
                        start: m.start(),
                        end: m.start() + end,
                    },
                    &mut found,
                );
            }
        }
    }
    if kinds.contains(&PiiKind::Card)
        && let Some(re) = CARD.as_ref()
    {
        for m in re.find_iter(text) {
            let digits: Vec<u32> = m.as_str().chars().filter_map(|c| c.to_digit(10)).collect();
            if luhn(&digits) {
                add(
                    PiiMatch {
                        kind: PiiKind::Card,
                        start: m.start(),
                        end: m.end(),
                    },
                    &mut found,
                );
            }
        }
    }
    if kinds.contains(&PiiKind::Email)
        && let Some(re) = EMAIL.as_ref()
    {
        for m in re.find_iter(text) {
            add(
                PiiMatch {
                    kind: PiiKind::Email,
                    start: m.start(),
                    end: m.end(),
                },
                &mut found,
            );
        }
    }
    if kinds.contains(&PiiKind::Phone)
        && let Some(re) = PHONE.as_ref()
    {
        for m in re.find_iter(text) {
            let s = m.as_str();
            let digits = s.chars().filter(char::is_ascii_digit).count();
            let marked = s.starts_with('+') || s.starts_with('(');
            if (7..=15).contains(&digits) && (marked || digits >= 9) {
                add(
                    PiiMatch {
                        kind: PiiKind::Phone,
                        start: m.start(),
                        end: m.end(),
                    },
                    &mut found,
                );
            }
        }
    }
    found.sort_by_key(|m| m.start);
    found
}

/// The Luhn check of a card number's digits (13 to 19 of them).
pub(crate) fn luhn(digits: &[u32]) -> bool {
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The mod-97 check of a compact IBAN (no spaces).
pub(crate) fn iban_ok(compact: &[u8]) -> bool {
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// The byte length of the longest prefix of `candidate` (a regex match, possibly running
/// into the next word) that is a valid IBAN.
fn valid_iban_end(candidate: &str) -> Option<usize> {
    let mut compact: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    for (i, c) in candidate.char_indices() {
        if c != ' ' {
            compact.push(c as u8);
            ends.push(i + c.len_utf8());
        }
    }
    (15..=compact.len().min(34))
        .rev()
        .find(|&n| iban_ok(&compact[..n]))
        .and_then(|n| ends.get(n - 1).copied())
}

/// `text` with every match replaced by its kind's placeholder.
pub(crate) fn redact(text: &str, matches: &[PiiMatch]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for m in matches {
        out.push_str(&text[at..m.start]);
        out.push_str(m.kind.placeholder());
        at = m.end;
    }
    out.push_str(&text[at..]);
    out
}
