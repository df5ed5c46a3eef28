//! The provider adapters at the HTTP boundary, against agentry-fake-upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anthropic;
mod anthropic_tools;
mod embeddings;
mod factory;
mod http2;
mod mock;
mod mock_tools;
mod openai;
mod openai_tools;
mod resilience;
mod support;
