//! Clusters (seed 004's `AgentCluster`): a manifest-defined group of agents with a resource
//! policy. The agents themselves are ordinary agents (their `cluster` field names the
//! cluster); the cluster keeps the policy and how many instances (concurrency slots) each
//! member has. See `services::ClusterService` for what applying a manifest does.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::agent::{AgentFields, AgentKey, ClusterName};
use crate::error::Invalid;
use crate::page::{Page, Paged};
use crate::text::check_slug;

/// The prefix of cluster ids.
pub const CLUSTER_ID_PREFIX: &str = "cluster";
/// The manifest `kind` of a cluster.
pub const CLUSTER_KIND: &str = "AgentCluster";
/// The `apiVersion`s a manifest may carry: Agentry's own and seed 004's.
pub const API_VERSIONS: [&str; 2] = ["agentry.dev/v1", "goagents.dev/v1"];
/// The namespace of a manifest that names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Most agents in one cluster.
pub const CLUSTER_AGENTS_MAX: usize = 100;
/// Most instances of one agent (and the largest `max_concurrent_agents`).
pub const INSTANCES_MAX: u32 = 1000;
/// Longest `idle_timeout`: one week.
pub const IDLE_TIMEOUT_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// A cluster's id: `cluster_` followed by 32 lowercase hex digits (a UUIDv7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterId(String);

impl ClusterId {
    /// A fresh id.
    pub fn generate() -> Self {
        Self(crate::ids::new_id(CLUSTER_ID_PREFIX))
    }

    /// Accepts text that has the shape of a cluster id.
    ///
    /// # Errors
    /// [`Invalid`] naming `id`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let hex = value.strip_prefix("cluster_").unwrap_or("");
        if hex.len() == 32
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new("id", "is not a cluster id"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manifest's namespace: a slug, `default` when absent. A label only: cluster names are
/// unique across namespaces (the API addresses a cluster by its name alone).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Validates a namespace.
    ///
    /// # Errors
    /// [`Invalid`] naming `metadata.namespace`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_slug("metadata.namespace", value, 63)?;
        Ok(Self(value.to_owned()))
    }

    /// `default`.
    pub fn default_namespace() -> Self {
        Self(DEFAULT_NAMESPACE.to_owned())
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a cluster's agents use resources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePolicy {
    /// At most this many turns of the cluster's agents run at once on a replica (whatever
    /// their instances add up to); `None`: no cap beyond each agent's instances.
    pub max_concurrent_agents: Option<u32>,
    /// How long an agent may go without a turn before it is scaled to zero (with
    /// `scale_to_zero`).
    pub idle_timeout: Option<Duration>,
    /// Release an idle agent's slots and MCP processes after `idle_timeout`; its next call
    /// starts it again.
    pub scale_to_zero: bool,
}

impl ResourcePolicy {
    /// Checks the policy as a whole: `scale_to_zero` needs an `idle_timeout`.
    ///
    /// # Errors
    /// [`Invalid`] naming the field.
    pub fn check(&self) -> Result<(), Invalid> {
        if let Some(n) = self.max_concurrent_agents
            && !(1..=INSTANCES_MAX).contains(&n)
        {
            return Err(Invalid::new(
                "spec.resource_policy.max_concurrent_agents",
                format!("must be between 1 and {INSTANCES_MAX}"),
            ));
        }
        if self.scale_to_zero && self.idle_timeout.is_none() {
            return Err(Invalid::new(
                "spec.resource_policy.idle_timeout",
                "is required when scale_to_zero is true",
            ));
        }
        Ok(())
    }
}

/// Validates a number of instances (1 to [`INSTANCES_MAX`]).
///
/// # Errors
/// [`Invalid`] naming `field`.
pub fn parse_instances(field: &str, value: i64) -> Result<u32, Invalid> {
    match u32::try_from(value) {
        Ok(n) if (1..=INSTANCES_MAX).contains(&n) => Ok(n),
        _ => Err(Invalid::new(
            field,
            format!("must be between 1 and {INSTANCES_MAX}"),
        )),
    }
}

/// Parses a duration as Go and Kubernetes write them (`300s`, `5m`, `1h30m`, `500ms`), or a
/// bare number of seconds. At least one second, at most a week.
///
/// # Errors
/// [`Invalid`] naming `field`.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, Invalid> {
    let bad = || {
        Invalid::new(
            field,
            "must be a duration such as '300s', '5m', '1h30m' or a number of seconds",
        )
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let total = if t.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(t.parse::<u64>().map_err(|_| bad())?)
    } else {
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let part = match &rest[..unit] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                _ => return Err(bad()),
            };
            rest = &rest[unit..];
            total = total.saturating_add(part);
        }
        total
    };
    if total < Duration::from_secs(1) || total > IDLE_TIMEOUT_MAX {
        return Err(Invalid::new(field, "must be between 1 second and 7 days"));
    }
    Ok(total)
}

/// Writes a duration the way [`parse_duration`] reads it (`300s`).
pub fn format_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// One agent of a manifest: its definition and its instances.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestAgent {
    /// The agent's key (the manifest's `name`, or derived from it).
    pub key: AgentKey,
    /// The definition (key, name, instructions, model, tools…); the cluster sets `cluster`
    /// and `status`.
    pub fields: AgentFields,
    /// Instances; `None` keeps the current number (1 for a new agent).
    pub instances: Option<u32>,
}

/// A validated `AgentCluster` manifest: what applying it makes true.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `apiVersion`, one of [`API_VERSIONS`].
    pub api_version: String,
    /// `metadata.name`.
    pub name: ClusterName,
    /// `metadata.namespace`.
    pub namespace: Namespace,
    /// `spec.resource_policy`.
    pub policy: ResourcePolicy,
    /// `spec.agents`.
    pub agents: Vec<ManifestAgent>,
}

impl Manifest {
    /// Checks what spans several agents: at most [`CLUSTER_AGENTS_MAX`], no key twice.
    ///
    /// # Errors
    /// [`Invalid`] naming the field.
    pub fn check(&self) -> Result<(), Invalid> {
        self.policy.check()?;
        if self.agents.len() > CLUSTER_AGENTS_MAX {
            return Err(Invalid::new(
                "spec.agents",
                format!("at most {CLUSTER_AGENTS_MAX} agents"),
            ));
        }
        for (i, a) in self.agents.iter().enumerate() {
            if self.agents[..i].iter().any(|b| b.key == a.key) {
                return Err(Invalid::new(
                    format!("spec.agents[{i}].name"),
                    format!("the agent '{}' is listed twice", a.key),
                ));
            }
        }
        Ok(())
    }
}

/// One member of a stored cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    /// The agent's key.
    pub key: AgentKey,
    /// Its instances: at most this many of its turns run at once (per replica).
    pub instances: u32,
}

/// A stored cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Stable id.
    pub id: ClusterId,
    /// Unique name.
    pub name: ClusterName,
    /// The manifest's namespace (a label).
    pub namespace: Namespace,
    /// The `apiVersion` it was applied with.
    pub api_version: String,
    /// Its resource policy.
    pub policy: ResourcePolicy,
    /// Its agents, in manifest order.
    pub members: Vec<ClusterMember>,
    /// Grows by one with every change (apply or scale); a write names the generation it
    /// read, so two concurrent changes cannot both win.
    pub generation: u64,
    /// Who created it.
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Durable storage of clusters.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Stores a new cluster.
    ///
    /// # Errors
    /// MUST return `Conflict` (field `name`) when another cluster has that name, (field `id`)
    /// when the id is taken; nothing is stored then.
    async fn insert_cluster(&self, cluster: &Cluster) -> Result<()>;

    /// One cluster by name.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `cluster`) when no cluster has that name.
    async fn get_cluster(&self, name: &ClusterName) -> Result<Cluster>;

    /// Clusters ordered by name, with the total number.
    async fn list_clusters(&self, page: Page) -> Result<Paged<Cluster>>;

    /// Replaces every field of the stored cluster with the same id, if and only if its
    /// stored generation is still `expected_generation` (compare and set, atomically).
    /// Returns `false` (and changes nothing) when the generation moved.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `cluster`) when the id does not exist.
    async fn update_cluster(&self, cluster: &Cluster, expected_generation: u64) -> Result<bool>;

    /// Deletes a cluster (not its agents). Returns whether it existed.
    async fn delete_cluster(&self, id: &ClusterId) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let secs = |t: &str| parse_duration("d", t).map(|d| d.as_millis());
        assert_eq!(secs("300s"), Ok(300_000));
        assert_eq!(secs("5m"), Ok(300_000));
        assert_eq!(secs("1h30m"), Ok(5_400_000));
        assert_eq!(secs("1500ms"), Ok(1_500));
        assert_eq!(secs("42"), Ok(42_000));
        for bad in ["", "s", "5x", "-5s", "500ms", "8d", "1h 30m", "1.5s"] {
            assert!(parse_duration("d", bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(300)), "300s");
    }

    #[test]
    fn ids_and_names() {
        let id = ClusterId::generate();
        assert_eq!(ClusterId::parse(id.as_str()), Ok(id));
        assert!(ClusterId::parse("cluster_x").is_err());
        assert!(Namespace::parse("default").is_ok());
        assert!(Namespace::parse("Bad NS").is_err());
        assert_eq!(
            parse_instances("i", 0).map_err(|e| e.field),
            Err("i".into())
        );
        assert_eq!(parse_instances("i", 5), Ok(5));
        assert!(parse_instances("i", 1001).is_err());
    }

    #[test]
    fn policy_rules() {
        let p = ResourcePolicy {
            scale_to_zero: true,
            ..ResourcePolicy::default()
        };
        assert_eq!(
            p.check().map_err(|e| e.field),
            Err("spec.resource_policy.idle_timeout".into())
        );
        let p = ResourcePolicy {
            max_concurrent_agents: Some(0),
            ..ResourcePolicy::default()
        };
        assert!(p.check().is_err());
    }
}
