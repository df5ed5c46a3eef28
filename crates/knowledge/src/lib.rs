//! Agentry's knowledge adapters: [`Extractor`] reads the text of files (plain text,
//! Markdown, HTML, XML, JSON, CSV, PDF) and [`TantivyIndex`] is the BM25 full-text index of
//! their chunks, both implementing the domain's ports (`agentry_domain::knowledge`).

mod extract;
mod index;

pub use extract::{Extractor, strip_markup};
pub use index::TantivyIndex;

#[cfg(test)]
mod tests;
