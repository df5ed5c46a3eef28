//! `agentry eval run`: runs a test set on a server against agents, agent versions or models,
//! waits for the result, prints a table, and says whether every configuration reached the pass
//! rate asked for, so that a CI pipeline can gate a release on it (exit 0: all did; 1: one
//! did not; 2: the run could not be made or did not complete).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::CliError;
use crate::remote::{Output, Remote, RemoteArgs};

/// `agentry eval …`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run a test set and wait for its result.
    Run(EvalRunArgs),
}

/// `agentry eval run`'s arguments.
#[derive(Debug, Args)]
pub struct EvalRunArgs {
    /// The test set: its id or its name.
    pub testset: String,
    /// An agent to run: `key`, or `key@version` for a published version; repeatable.
    #[arg(long = "agent")]
    pub agents: Vec<String>,
    /// A model to run with `--preamble`: `provider/model`; repeatable.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// The system instructions of each `--model`.
    #[arg(long)]
    pub preamble: Option<String>,
    /// The judge of `judge` assertions that name none (an agent key or provider/model).
    #[arg(long)]
    pub judge: Option<String>,
    /// Cases run at once (1 to 16).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Times each case runs per configuration (1 to 10).
    #[arg(long)]
    pub repeats: Option<u32>,
    /// The pass rate every configuration must reach, from 0 to 1.
    #[arg(long, default_value_t = 1.0)]
    pub min_pass_rate: f64,
    /// Longest wait for the run, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// `table` or `json` (the run as the API gives it).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// What `agentry eval run` found: the text to print and whether the gate passed.
#[derive(Debug)]
pub struct EvalReport {
    /// The table (or JSON).
    pub text: String,
    /// Every configuration reached the pass rate.
    pub passed: bool,
}

/// The run's configurations from the arguments.
fn configurations(args: &EvalRunArgs) -> Result<Vec<Value>, CliError> {
    let mut out = Vec::new();
    for a in &args.agents {
        out.push(match a.rsplit_once('@') {
            Some((key, v)) => {
                let v: u32 = v.parse().map_err(|_| {
                    CliError::Refused(format!("--agent {a}: the version after @ must be a number"))
                })?;
                json!({"agent": key, "version": v})
            }
            None => json!({"agent": a}),
        });
    }
    for m in &args.models {
        let mut c = json!({"model": m});
        if let Some(p) = &args.preamble {
            c["preamble"] = json!(p);
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err(CliError::Refused(
            "name at least one --agent or --model to run the test set against".into(),
        ));
    }
    if !(0.0..=1.0).contains(&args.min_pass_rate) {
        return Err(CliError::Refused(
            "--min-pass-rate must be from 0 to 1".into(),
        ));
    }
    Ok(out)
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// Runs the test set, waits (printing progress on standard error) and reports.
///
/// # Errors
/// [`CliError::Refused`] when the server refuses the run, cannot be reached, or the run fails,
/// is cancelled or does not end within the timeout.
pub async fn run(remote: &Remote, args: EvalRunArgs) -> Result<EvalReport, CliError> {
    let mut body = json!({"configurations": configurations(&args)?});
    if let Some(j) = &args.judge {
        body["judge"] = json!(j);
    }
    if let Some(c) = args.concurrency {
        body["concurrency"] = json!(c);
    }
    if let Some(r) = args.repeats {
        body["repeats"] = json!(r);
    }
    let set = urlencoding(&args.testset);
    let started = remote
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/testsets/{set}/runs"),
            Some(&body),
        )
        .await?;
    let id = started["id"]
        .as_str()
        .ok_or_else(|| CliError::Refused("the server's answer has no run id".into()))?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut shown = None;
    let run = loop {
        let run = remote
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/eval-runs/{id}"),
                None,
            )
            .await?;
        let status = run["status"].as_str().unwrap_or_default().to_owned();
        let progress = (
            run["progress"]["done"].as_u64(),
            run["progress"]["total"].as_u64(),
        );
        if shown != Some(progress) {
            eprintln!(
                "{id}: {status} {}/{}",
                progress.0.unwrap_or(0),
                progress.1.unwrap_or(0)
            );
            shown = Some(progress);
        }
        match status.as_str() {
            "completed" => break run,
            "failed" | "cancelled" => {
                return Err(CliError::Refused(format!(
                    "run {id} {status}{}",
                    run["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(CliError::Refused(format!(
                "run {id} did not end within {} s (it goes on on the server)",
                args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let summary = run["summary"].as_array().cloned().unwrap_or_default();
    let below: Vec<String> = summary
        .iter()
        .filter(|s| s["pass_rate"].as_f64().unwrap_or(0.0) < args.min_pass_rate)
        .map(|s| {
            format!(
                "{} ({})",
                s["label"].as_str().unwrap_or_default(),
                percent(s["pass_rate"].as_f64().unwrap_or(0.0))
            )
        })
        .collect();
    let passed = below.is_empty() && !summary.is_empty();
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&run).unwrap_or_default(),
        Output::Table => table(&run, &summary, args.min_pass_rate, &below),
    };
    Ok(EvalReport { text, passed })
}

/// The run as a table: one row per configuration, then the failed cases.
fn table(run: &Value, summary: &[Value], min: f64, below: &[String]) -> String {
    let mut out = format!(
        "{} on test set \"{}\": {} results\n",
        run["id"].as_str().unwrap_or_default(),
        run["testset_name"].as_str().unwrap_or_default(),
        run["progress"]["total"]
    );
    let width = summary
        .iter()
        .map(|s| s["label"].as_str().unwrap_or_default().chars().count())
        .max()
        .unwrap_or(0)
        .max("CONFIGURATION".len());
    out.push_str(&format!(
        "{:width$}  {:>9}  {:>9}  {:>6}  {:>7}  {:>7}  {:>8}\n",
        "CONFIGURATION", "PASS RATE", "PASSED", "ERRORS", "P50 MS", "P95 MS", "TOKENS"
    ));
    let number = |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
    for s in summary {
        out.push_str(&format!(
            "{:width$}  {:>9}  {:>9}  {:>6}  {:>7}  {:>7}  {:>8}\n",
            s["label"].as_str().unwrap_or_default(),
            percent(s["pass_rate"].as_f64().unwrap_or(0.0)),
            format!("{}/{}", s["passed"], s["results"]),
            s["errors"],
            number(&s["latency_p50_ms"]),
            number(&s["latency_p95_ms"]),
            number(&s["tokens"]["total"]),
        ));
    }
    let failed: Vec<&Value> = run["results"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["passed"] == false).collect())
        .unwrap_or_default();
    if !failed.is_empty() {
        out.push_str(&format!("\nFAILED ({}):\n", failed.len()));
        for r in failed.iter().take(20) {
            let case = r["case_name"].as_str().map_or_else(
                || r["case_id"].as_str().unwrap_or_default().to_owned(),
                str::to_owned,
            );
            let why = match r["error"].as_str() {
                Some(e) => format!("error: {e}"),
                None => r["assertions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| a["passed"] == false)
                    .map(|a| {
                        format!(
                            "{}: {}",
                            a["type"].as_str().unwrap_or_default(),
                            a["reason"].as_str().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            out.push_str(&format!(
                "  {} / {case}: {why}\n",
                r["label"].as_str().unwrap_or_default()
            ));
        }
        if failed.len() > 20 {
            out.push_str(&format!("  … and {} more\n", failed.len() - 20));
        }
    }
    out.push('\n');
    if below.is_empty() {
        out.push_str(&format!(
            "PASSED: every configuration reached {}",
            percent(min)
        ));
    } else {
        out.push_str(&format!(
            "FAILED: below {}: {}",
            percent(min),
            below.join(", ")
        ));
    }
    out
}

/// `text` made safe as one path segment.
fn urlencoding(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_become_path_segments() {
        assert_eq!(
            urlencoding("Customer Support/v2"),
            "Customer%20Support%2Fv2"
        );
        assert_eq!(urlencoding("testset_0a"), "testset_0a");
    }
}
