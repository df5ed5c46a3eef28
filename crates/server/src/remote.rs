//! `agentry apply | get | delete | scale`: cluster commands against a running server (local or
//! remote) over its HTTP API, with an API key or access token (`--key`). Each command returns
//! the text to print.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::CliError;

/// Where the server is, and the credential to send.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "AGENTRY_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// An API key (`agk_…`) or access token, sent as `Authorization: Bearer …`.
    #[arg(long, env = "AGENTRY_API_KEY", hide_env_values = true, global = true,
        value_parser = secret)]
    pub key: Option<SecretString>,
}

fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// What `agentry get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Clusters (with a name: one cluster and its agents).
    #[value(alias = "cluster")]
    Clusters,
    /// Agents (`--cluster` to list one cluster's).
    #[value(alias = "agent")]
    Agents,
}

/// How `agentry get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// A table.
    #[default]
    Table,
    /// The API's JSON.
    Json,
}

/// `agentry delete …` / `agentry scale …`: what is named.
#[derive(Debug, Subcommand)]
pub enum ClusterTarget {
    /// A cluster.
    Cluster {
        /// Its name.
        name: String,
        /// The agent to scale (its name or key); `scale` only.
        #[arg(long)]
        agent: Option<String>,
        /// Its new number of instances; `scale` only.
        #[arg(long)]
        instances: Option<u32>,
    },
}

/// A client of one server.
pub struct Remote {
    base: String,
    key: Option<SecretString>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    details: Option<Value>,
}

impl Remote {
    /// A client of `args.server`.
    ///
    /// # Errors
    /// [`CliError::Refused`] for a URL that is not `http://` or `https://`.
    pub fn new(args: &RemoteArgs) -> Result<Self, CliError> {
        let base = args.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Refused(format!(
                "--server must be an http:// or https:// URL, got '{base}'"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::Refused(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            base,
            key: args.key.clone(),
            http,
        })
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k.expose_secret());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| CliError::Refused(format!("cannot reach {}: {e}", self.base)))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| CliError::Refused(format!("cannot read the answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| CliError::Refused(format!("the answer is not JSON: {e}")));
        }
        Err(CliError::Refused(
            match serde_json::from_str::<ErrorEnvelope>(&text) {
                Ok(e) => {
                    let field = e
                        .error
                        .details
                        .as_ref()
                        .and_then(|d| d.get("field"))
                        .and_then(Value::as_str)
                        .map(|f| format!(" (field {f})"))
                        .unwrap_or_default();
                    format!(
                        "{} {}: {}{field}",
                        status.as_u16(),
                        e.error.code,
                        e.error.message
                    )
                }
                Err(_) => format!("{}: {}", status.as_u16(), text.trim()),
            },
        ))
    }
}

/// One manifest document and where it came from.
struct Document {
    origin: String,
    value: Value,
}

/// The documents of a YAML (or JSON) text; empty documents are skipped.
fn documents(origin: &str, text: &str) -> Result<Vec<Document>, CliError> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| CliError::Refused(format!("{origin}: document {}: {e}", i + 1)))?;
        if !value.is_null() {
            out.push(Document {
                origin: if i == 0 {
                    origin.to_owned()
                } else {
                    format!("{origin} (document {})", i + 1)
                },
                value,
            });
        }
    }
    Ok(out)
}

/// The manifest files of `path`: the file itself, or a folder's `*.yaml`, `*.yml` and
/// `*.json` files (not its subfolders), by name.
fn files(path: &Path) -> Result<Vec<PathBuf>, CliError> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| CliError::Refused(format!("cannot read {}: {e}", path.display())))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(CliError::Refused(format!(
            "{} holds no .yaml, .yml or .json file",
            path.display()
        )));
    }
    Ok(out)
}

fn read_documents(sources: &[String]) -> Result<Vec<Document>, CliError> {
    let mut out = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Refused(format!("cannot read standard input: {e}")))?;
            out.extend(documents("<stdin>", &text)?);
            continue;
        }
        for file in files(Path::new(source))? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Refused(format!("cannot read {}: {e}", file.display())))?;
            out.extend(documents(&file.display().to_string(), &text)?);
        }
    }
    if out.is_empty() {
        return Err(CliError::Refused("no manifest to apply".to_owned()));
    }
    Ok(out)
}

/// `agentry apply -f …`: applies every manifest (`PUT /api/v1/clusters/{name}`), in order,
/// going on after a failure; fails at the end if any failed.
///
/// # Errors
/// [`CliError::Refused`] listing what failed (after what succeeded).
pub async fn apply(remote: &Remote, sources: &[String]) -> Result<String, CliError> {
    let docs = read_documents(sources)?;
    let mut lines = Vec::new();
    let mut failed = 0;
    for doc in docs {
        let name = doc
            .value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(name) = name else {
            failed += 1;
            lines.push(format!("error: {}: metadata.name is required", doc.origin));
            continue;
        };
        let path = format!("/api/v1/clusters/{}", encode(&name));
        match remote
            .send(reqwest::Method::PUT, &path, Some(&doc.value))
            .await
        {
            Ok(applied) => {
                let result = applied["result"].as_str().unwrap_or("applied");
                let changes: Vec<String> = applied["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["change"] != "unchanged")
                    .map(|c| {
                        let version = c["version"]
                            .as_u64()
                            .map(|v| format!(" v{v}"))
                            .unwrap_or_default();
                        format!(
                            "{} {}{version}",
                            c["agent"].as_str().unwrap_or("?"),
                            c["change"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                let detail = if changes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", changes.join(", "))
                };
                lines.push(format!("cluster/{name} {result}{detail}"));
            }
            Err(e) => {
                failed += 1;
                lines.push(format!("error: {} (cluster/{name}): {e}", doc.origin));
            }
        }
    }
    let text = lines.join("\n");
    if failed > 0 {
        return Err(CliError::Refused(text));
    }
    Ok(text)
}

/// A path segment, percent-encoded where it must be.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `agentry get clusters|agents [NAME]`.
///
/// # Errors
/// [`CliError::Refused`] with the server's answer.
pub async fn get(
    remote: &Remote,
    kind: Kind,
    name: Option<&str>,
    cluster: Option<&str>,
    output: Output,
) -> Result<String, CliError> {
    let path = match (kind, name, cluster) {
        (Kind::Clusters, Some(n), _) => format!("/api/v1/clusters/{}", encode(n)),
        (Kind::Clusters, None, _) => "/api/v1/clusters?limit=100".to_owned(),
        (Kind::Agents, Some(n), _) => format!("/api/v1/agents/{}", encode(n)),
        (Kind::Agents, None, Some(c)) => {
            format!("/api/v1/agents?limit=100&cluster={}", encode(c))
        }
        (Kind::Agents, None, None) => "/api/v1/agents?limit=100".to_owned(),
    };
    let v = remote.send(reqwest::Method::GET, &path, None).await?;
    if output == Output::Json {
        return serde_json::to_string_pretty(&v)
            .map_err(|e| CliError::Refused(format!("cannot print JSON: {e}")));
    }
    let mut out = String::new();
    match (kind, name) {
        (Kind::Clusters, Some(_)) => {
            out.push_str(&format!(
                "cluster {} ({}), status {}, {} agent(s), per replica\n",
                s(&v["name"]),
                s(&v["namespace"]),
                s(&v["status"]),
                s(&v["agents_count"])
            ));
            out.push_str(&format!(
                "{:<28} {:<9} {:>9} {:>7} {:>9} {:>8}  MODEL",
                "AGENT", "STATUS", "INSTANCES", "CURRENT", "IN-FLIGHT", "REQUESTS"
            ));
            for a in v["agents"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "\n{:<28} {:<9} {:>9} {:>7} {:>9} {:>8}  {}",
                    s(&a["key"]),
                    s(&a["status"]),
                    s(&a["instances"]),
                    s(&a["current_instances"]),
                    s(&a["in_flight"]),
                    s(&a["total_requests"]),
                    s(&a["model"])
                ));
            }
        }
        (Kind::Clusters, None) => {
            out.push_str(&format!(
                "{:<28} {:<14} {:<9} {:>6} {:>8}  UPDATED",
                "NAME", "NAMESPACE", "STATUS", "AGENTS", "REQUESTS"
            ));
            for c in v["clusters"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "\n{:<28} {:<14} {:<9} {:>6} {:>8}  {}",
                    s(&c["name"]),
                    s(&c["namespace"]),
                    s(&c["status"]),
                    s(&c["agents_count"]),
                    s(&c["metrics"]["total_requests"]),
                    s(&c["updated_at"])
                ));
            }
        }
        (Kind::Agents, Some(_)) => {
            out.push_str(&format!(
                "agent {} ({}), status {}, cluster {}, model {}",
                s(&v["key"]),
                s(&v["id"]),
                s(&v["status"]),
                s(&v["cluster"]),
                s(&v["model"])
            ));
        }
        (Kind::Agents, None) => {
            out.push_str(&format!(
                "{:<28} {:<20} {:<9}  MODEL",
                "KEY", "CLUSTER", "STATUS"
            ));
            for a in v["agents"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "\n{:<28} {:<20} {:<9}  {}",
                    s(&a["key"]),
                    s(&a["cluster"]),
                    s(&a["status"]),
                    s(&a["model"])
                ));
            }
        }
    }
    Ok(out)
}

/// `agentry delete cluster NAME`.
///
/// # Errors
/// [`CliError::Refused`] with the server's answer.
pub async fn delete(remote: &Remote, target: ClusterTarget) -> Result<String, CliError> {
    let ClusterTarget::Cluster { name, .. } = target;
    let v = remote
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/clusters/{}", encode(&name)),
            None,
        )
        .await?;
    if v["deleted"] == Value::Bool(false) {
        return Ok(format!("cluster/{name} not found; nothing deleted"));
    }
    let archived: Vec<String> = v["archived_agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    Ok(format!(
        "cluster/{name} deleted; agents archived: {}",
        if archived.is_empty() {
            "none".to_owned()
        } else {
            archived.join(", ")
        }
    ))
}

/// `agentry scale cluster NAME --agent A --instances N`.
///
/// # Errors
/// [`CliError::Refused`] for missing options or with the server's answer.
pub async fn scale(remote: &Remote, target: ClusterTarget) -> Result<String, CliError> {
    let ClusterTarget::Cluster {
        name,
        agent,
        instances,
    } = target;
    let agent = agent.ok_or_else(|| CliError::Refused("--agent is required".to_owned()))?;
    let instances =
        instances.ok_or_else(|| CliError::Refused("--instances is required".to_owned()))?;
    let body = serde_json::json!({"agent_name": agent, "instances": instances});
    let v = remote
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/clusters/{}/scale", encode(&name)),
            Some(&body),
        )
        .await?;
    Ok(format!(
        "cluster/{name} agent {} scaled from {} to {} instances (now {}, {}; per replica)",
        s(&v["agent_name"]),
        s(&v["previous_instances"]),
        s(&v["target_instances"]),
        s(&v["current_instances"]),
        s(&v["status"])
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let docs = documents(
            "f.yaml",
            "---\nmetadata: {name: a}\n---\n---\nmetadata: {name: b}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["metadata"]["name"], "b");
        assert!(documents("f.yaml", "a: [").is_err());
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
