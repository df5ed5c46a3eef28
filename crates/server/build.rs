//! Links the release `agentry` binary with its functions in a measured order (decision 129).
//!
//! `link-order.txt` lists the functions a running server executes (start-up, login, agent
//! chat, the OpenAI surfaces, streams over HTTP/1.1 and HTTP/2 upstreams), hottest first, as
//! recorded by `make link-order`. The linker places them together at the start of the code,
//! so the pages the kernel maps for a running server are these functions' instead of a few
//! bytes of each of hundreds of 64 KB windows scattered over 32 MB of code: resident memory
//! at rest goes from ~31 to ~21 MB. Names the file lists that a build does not have (code
//! changed since it was recorded, another compiler) are skipped; the binary is the same
//! program, only laid out differently.
//!
//! Only where the linker is known to be LLD, which reads the file: release builds for
//! `x86_64-unknown-linux-gnu` with Rust ≥ 1.90 (where rustc links with its own LLD) and no
//! linker chosen by the user. Anywhere else the binary is linked as before.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "link-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if !wanted() {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let file = Path::new(&dir).join(ORDER_FILE);
    if !file.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=agentry=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    // Stale names are expected after a change and are not worth a warning per name.
    println!("cargo:rustc-link-arg-bin=agentry=-Wl,--no-warn-symbol-ordering");
}

/// Whether this build links with rustc's own LLD: a release build for the one target where
/// that is the default, with no linker or linker flags of the user's.
fn wanted() -> bool {
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("PROFILE") != "release" || var("TARGET") != "x86_64-unknown-linux-gnu" {
        return false;
    }
    if env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    rustc_minor().is_some_and(|minor| minor >= 90)
}

/// The minor version of the compiler building this crate (`rustc 1.95.0 (…)` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(rustc).arg("-V").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}
