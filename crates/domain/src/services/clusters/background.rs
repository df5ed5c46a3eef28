//! The work beside requests: reloading the clusters when another replica changed them,
//! and scaling idle agents to zero (their MCP servers stopped).

use std::future::Future;
use std::time::Duration;

use super::{ClusterService, key_of};
use crate::agent::{Agent, AgentKey, AgentStatus};
use crate::error::{Error, Result};
use crate::mcp::McpServerRef;

impl ClusterService {
    /// Loads every cluster into this replica's slots.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn reload(&self) -> Result<()> {
        let all = self.list_all().await?;
        self.instances.sync(&all);
        Ok(())
    }

    /// Stops the MCP servers the given (now idle or archived) agents bind, unless a running
    /// cluster agent binds them too. Others using them start them again on their next turn.
    pub(super) async fn release_mcp(&self, keys: &[AgentKey]) {
        if keys.is_empty() {
            return;
        }
        let slugs = |a: &Agent| -> Vec<crate::mcp::McpSlug> {
            a.tools
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.mcp_binding(i).map(|b| b.server))
                .collect()
        };
        let mut release = Vec::new();
        for key in keys {
            if let Ok(Some(a)) = self.find_agent(key).await {
                release.extend(slugs(&a));
            }
        }
        if release.is_empty() {
            return;
        }
        let mut keep = Vec::new();
        for key in self.instances.running_keys() {
            if let Some(k) = key_of(&key)
                && let Ok(Some(a)) = self.find_agent(&k).await
                && a.status == AgentStatus::Active
            {
                keep.extend(slugs(&a));
            }
        }
        release.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        release.dedup();
        for slug in release {
            if keep.contains(&slug) {
                continue;
            }
            match self.mcp.stop(&McpServerRef::Slug(slug.clone())).await {
                Ok(_) => tracing::info!(server = %slug, "stopped the MCP server of an idle agent"),
                Err(Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(server = %slug, error = %e, "could not stop an MCP server")
                }
            }
        }
    }

    /// The work beside requests, forever: every 250 ms, scale idle agents to zero (and stop
    /// their MCP servers); every second, reload the clusters when the shared change counter
    /// moved (another replica applied or scaled).
    pub fn background(&self) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks: u64 = 0;
            let mut seen: Option<i64> = None;
            let mut failing = false;
            loop {
                every.tick().await;
                ticks += 1;
                let idle: Vec<AgentKey> = this
                    .instances
                    .sweep()
                    .iter()
                    .filter_map(|k| AgentKey::parse(k).ok())
                    .collect();
                this.release_mcp(&idle).await;
                if !ticks.is_multiple_of(4) {
                    continue;
                }
                let moved = match this.changes.change_counter().await {
                    Ok(n) => {
                        let moved = seen != Some(n);
                        seen = Some(n);
                        moved
                    }
                    Err(_) => true,
                };
                if moved {
                    match this.reload().await {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "could not reload the clusters");
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }
}
