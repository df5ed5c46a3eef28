//! `agentry-fake-upstream --addr 127.0.0.1:9100 --latency-ms 0 --stream-limit 200`: the fake LLM
//! upstream as a process, for benchmarks. HTTP/1.1, and HTTP/2 for clients that start with its
//! preface (at most `--stream-limit` streams per connection, 0 = no limit). No request logging,
//! no recording.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use agentry_fake_upstream::FakeUpstream;

const USAGE: &str =
    "usage: agentry-fake-upstream [--addr 127.0.0.1:9100] [--latency-ms 0] [--stream-limit 200]";

struct Args {
    addr: SocketAddr,
    latency: Duration,
    stream_limit: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 9100)),
        latency: Duration::ZERO,
        stream_limit: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = |it: &mut dyn Iterator<Item = String>| {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--addr" => {
                let v = value(&mut it)?;
                args.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--latency-ms" => {
                let v = value(&mut it)?;
                let ms = v.parse().map_err(|e| format!("--latency-ms {v}: {e}"))?;
                args.latency = Duration::from_millis(ms);
            }
            "--stream-limit" => {
                let v = value(&mut it)?;
                let limit = v.parse().map_err(|e| format!("--stream-limit {v}: {e}"))?;
                args.stream_limit = Some(limit);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeUpstream::bind(args.addr).await {
        Ok(fake) => {
            let fake = fake.with_recording(false).with_latency(args.latency);
            match args.stream_limit {
                Some(limit) => fake.with_stream_limit(limit),
                None => fake,
            }
        }
        Err(error) => {
            eprintln!("cannot bind {}: {error}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    println!(
        "agentry-fake-upstream listening: OpenAI base {} , Anthropic base {}",
        fake.base_url(),
        fake.origin()
    );
    tokio::select! {
        () = fake.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}
