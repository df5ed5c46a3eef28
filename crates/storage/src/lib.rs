//! Agentry's storage adapters: diesel over SQLite (embedded, the default) or PostgreSQL,
//! behind the domain's ports.
//!
//! [`Database::connect`] picks the backend from the URL scheme and opens an r2d2 pool of
//! `AnyConnection`s (SQLite or PostgreSQL); [`Database::migrate`] applies the embedded
//! migrations (`migrations/sqlite` or `migrations/postgres`, identical names); then
//! [`Database::agents`], [`Database::providers`], [`Database::conversations`],
//! [`Database::runs`], [`Database::versions`], [`Database::users`], [`Database::sessions`],
//! [`Database::api_keys`], [`Database::server_secrets`], [`Database::mcp_servers`],
//! [`Database::tasks`], [`Database::events`],
//! [`Database::changes`] and
//! [`Database::health`] hand out the
//! port objects. Diesel is synchronous: every port call runs on tokio's blocking pool.
//!
//! One `schema.rs` in column types both backends share (ids and JSON as text, timestamps
//! without time zone in UTC). Diesel errors never leave the crate: port methods translate
//! them into [`agentry_domain::Error`] kinds (unique violation → `Conflict`, missing row →
//! `NotFound`, no connection → `Unavailable`, the rest → `Internal`).

mod agents;
mod auth;
mod auth_rows;
mod changes;
mod checkpoint;
mod clusters;
mod connection;
mod conversations;
mod database;
mod error;
mod evals;
mod events;
mod files;
mod group_commit;
mod history_rows;
mod insights;
mod knowledge;
mod mcp_servers;
mod multi_row;
mod optimizations;
mod providers;
mod rows;
mod run_log;
mod runs;
mod schema;
mod store;
mod target;
mod tasks;
mod translate;
mod version_rows;
mod versions;

#[cfg(feature = "test-support")]
pub mod test_support;

pub use database::{Database, PoolOptions};
pub use error::StorageError;
pub use target::Backend;
