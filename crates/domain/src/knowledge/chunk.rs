//! Cutting text into overlapping chunks: about `size` characters each, ending at a paragraph,
//! sentence or word boundary when one is near, each starting `overlap` characters before the
//! previous one ended (at a word boundary), so a passage split by a cut is whole in one chunk.

/// How far back the start of a chunk may move to begin at a word.
const WORD_BACKTRACK: usize = 40;

/// The chunks of `text`: whitespace runs collapsed, each chunk at most `size` characters,
/// consecutive chunks overlapping by about `overlap` characters. Empty text gives none.
pub fn chunk_text(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let size = size.max(50);
    let overlap = overlap.min(size / 2);
    let clean = normalise(text);
    let chars: Vec<char> = clean.chars().collect();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let hard_end = (start + size).min(chars.len());
        let end = if hard_end == chars.len() {
            hard_end
        } else {
            boundary(&chars, start + size / 2, hard_end)
        };
        let chunk: String = chars[start..end].iter().collect();
        let chunk = chunk.trim();
        if !chunk.is_empty() {
            chunks.push(chunk.to_owned());
        }
        if end >= chars.len() {
            break;
        }
        // The next chunk starts `overlap` before this end, at the start of a word when one
        // starts shortly before (else right there).
        let target = end.saturating_sub(overlap).max(start + 1);
        let floor = target.saturating_sub(WORD_BACKTRACK).max(start + 1);
        let mut next = target;
        while next > floor && !chars[next - 1].is_whitespace() {
            next -= 1;
        }
        if !chars[next - 1].is_whitespace() {
            next = target;
        }
        start = next;
    }
    chunks
}

/// The best place to cut in `chars[lo..hi]`: after the last paragraph break, else after the
/// last sentence end, else at the last space, else `hi`.
fn boundary(chars: &[char], lo: usize, hi: usize) -> usize {
    let window = lo..hi;
    let last = |pred: &dyn Fn(usize) -> bool| window.clone().rev().find(|&i| pred(i));
    if let Some(i) = last(&|i| chars[i] == '\n' && i > 0 && chars[i - 1] == '\n') {
        return i + 1;
    }
    if let Some(i) = last(&|i| {
        matches!(chars[i], '.' | '!' | '?') && chars.get(i + 1).is_some_and(|c| c.is_whitespace())
    }) {
        return i + 1;
    }
    if let Some(i) = last(&|i| chars[i].is_whitespace()) {
        return i + 1;
    }
    hi
}

/// Lines trimmed, runs of blank lines made one paragraph break, runs of spaces one space.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(&line);
    }
    out
}
