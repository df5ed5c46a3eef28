//! Agentry's domain: entities, validated newtypes, use-case services and the ports
//! (traits) that adapters implement.
//!
//! This crate is framework-free on purpose: no web framework, no ORM, no HTTP client and no
//! JWT library appear in its dependency tree (`make test` checks it), so it can be embedded
//! in any Rust service.
//!
//! Reading order: [`error`] (the few kinds of failure), [`agent`] and [`provider`] (the
//! entities and their validated fields), [`ports`] (what adapters must do), then
//! [`services`] (the use cases).

pub mod agent;
pub mod auth;
pub mod cache;
pub mod cluster;
pub mod conversation;
pub mod error;
pub mod eval;
pub mod event;
pub mod file;
pub mod guardrail;
pub mod ids;
pub mod insight;
pub mod knowledge;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod optimization;
pub mod page;
pub mod ports;
pub mod provider;
pub mod schema;
pub mod services;
pub mod task;
pub mod text;
pub mod tool;
pub mod version;

pub use error::{Error, Invalid, Result};
