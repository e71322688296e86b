//! Records the compiler's version for `gobetween_build_info{goversion}`, the label gobetween fills
//! with its Go runtime's version.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BETWIXT_RUSTC_VERSION={version}");
    // The revision and branch labels come from these variables at build time.
    println!("cargo:rerun-if-env-changed=BETWIXT_REVISION");
    println!("cargo:rerun-if-env-changed=BETWIXT_BRANCH");
    println!("cargo:rerun-if-changed=build.rs");
}
