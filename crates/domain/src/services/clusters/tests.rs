#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use super::instances::{InstanceSettings, Instances};
use crate::agent::{AgentKey, ClusterName};
use crate::cluster::{Cluster, ClusterId, ClusterMember, Namespace, ResourcePolicy};
use crate::error::Error;

fn cluster(name: &str, members: &[(&str, u32)], policy: ResourcePolicy) -> Cluster {
    Cluster {
        id: ClusterId::generate(),
        name: ClusterName::parse(name).unwrap(),
        namespace: Namespace::default_namespace(),
        api_version: "agentry.dev/v1".into(),
        policy,
        members: members
            .iter()
            .map(|(k, n)| ClusterMember {
                key: AgentKey::parse(k).unwrap(),
                instances: *n,
            })
            .collect(),
        generation: 1,
        created_by: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

fn registry(timeout_ms: u64) -> Instances {
    Instances::new(InstanceSettings {
        queue_timeout: Duration::from_millis(timeout_ms),
        queue_max: 10,
    })
}

#[tokio::test]
async fn agents_outside_clusters_take_no_slot() {
    let i = registry(10);
    assert!(i.acquire("free").await.unwrap().is_none());
}

#[tokio::test]
async fn a_second_turn_waits_for_the_slot_then_is_refused() {
    let i = registry(50);
    i.sync(&[cluster("c", &[("a", 1)], ResourcePolicy::default())]);
    let first = i.acquire("a").await.unwrap().expect("a slot");
    let refused = i.acquire("a").await;
    assert!(
        matches!(&refused, Err(Error::Busy { retry_after, .. }) if *retry_after >= Duration::from_secs(1)),
        "{refused:?}"
    );
    assert_eq!(i.state("a").map(|s| (s.in_use, s.rejected)), Some((1, 1)));
    // A waiting turn gets the slot as soon as it is released.
    let waiter = {
        let i = i.clone();
        tokio::spawn(async move { i.acquire("a").await.map(|s| s.is_some()) })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(i.state("a").map(|s| s.waiting), Some(1));
    drop(first);
    assert!(matches!(waiter.await.unwrap(), Ok(true)));
}

#[tokio::test]
async fn scaling_up_frees_waiters_and_scaling_down_drains() {
    let i = registry(1000);
    let c1 = cluster("c", &[("a", 1)], ResourcePolicy::default());
    i.sync(&[c1]);
    let first = i.acquire("a").await.unwrap();
    let waiter = {
        let i = i.clone();
        tokio::spawn(async move { i.acquire("a").await.map(|s| s.is_some()) })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    i.upsert(&cluster("c", &[("a", 2)], ResourcePolicy::default()));
    assert!(
        matches!(waiter.await.unwrap(), Ok(true)),
        "the new slot serves the waiter"
    );
    // Two held (the waiter's slot was dropped with its task); scale to 1 while one runs.
    let second = i.acquire("a").await.unwrap();
    assert_eq!(i.state("a").map(|s| s.in_use), Some(2));
    i.upsert(&cluster("c", &[("a", 1)], ResourcePolicy::default()));
    assert_eq!(i.state("a").map(|s| s.status), Some("scaling"));
    drop(first);
    assert_eq!(i.state("a").map(|s| s.status), Some("running"));
    drop(second);
    let third = i.acquire("a").await.unwrap();
    assert!(third.is_some());
    assert_eq!(i.state("a").map(|s| (s.instances, s.in_use)), Some((1, 1)));
}

#[tokio::test]
async fn the_cluster_cap_is_shared_by_its_agents() {
    let i = registry(30);
    let policy = ResourcePolicy {
        max_concurrent_agents: Some(1),
        ..ResourcePolicy::default()
    };
    i.sync(&[cluster("c", &[("a", 5), ("b", 5)], policy)]);
    let held = i.acquire("a").await.unwrap();
    assert!(matches!(i.acquire("b").await, Err(Error::Busy { .. })));
    drop(held);
    assert!(i.acquire("b").await.unwrap().is_some());
}

#[tokio::test]
async fn idle_agents_scale_to_zero_and_start_again() {
    let i = registry(30);
    let policy = ResourcePolicy {
        idle_timeout: Some(Duration::from_millis(40)),
        scale_to_zero: true,
        ..ResourcePolicy::default()
    };
    i.sync(&[cluster("c", &[("a", 2)], policy)]);
    assert!(i.sweep().is_empty(), "not idle yet");
    let held = i.acquire("a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(i.sweep().is_empty(), "a running turn keeps it up");
    drop(held);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(i.sweep(), vec!["a".to_owned()]);
    assert_eq!(
        i.state("a").map(|s| (s.status, s.current_instances)),
        Some(("idle", 0))
    );
    assert!(i.sweep().is_empty(), "once");
    let again = i.acquire("a").await.unwrap();
    assert!(again.is_some());
    assert_eq!(
        i.state("a").map(|s| (s.status, s.cold_starts)),
        Some(("running", 1))
    );
}

#[tokio::test]
async fn removed_clusters_stop_taking_slots() {
    let i = registry(10);
    i.sync(&[
        cluster("c", &[("a", 1)], ResourcePolicy::default()),
        cluster("d", &[("b", 1)], ResourcePolicy::default()),
    ]);
    i.sync(&[cluster("d", &[("b", 1)], ResourcePolicy::default())]);
    assert!(i.state("a").is_none());
    assert!(i.state("b").is_some());
    i.remove("d");
    assert!(i.acquire("b").await.unwrap().is_none());
}
