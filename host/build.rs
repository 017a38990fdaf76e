//! Builds the guest components (`wasm32-wasip2`) with the host, so `cargo build --release` at the
//! root yields both `ember` and the function it serves. The nested cargo uses its own target dir
//! (`target/wasm`, the path spin.toml names) so it never contends for the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest packages built here, and the `.wasm` each produces.
const GUESTS: &[(&str, &str)] = &[
    ("ember-function", "ember_function.wasm"),
    ("ember-misbehave", "ember_misbehave.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in [
        "function/src",
        "function/wit",
        "function/Cargo.toml",
        "tests/guests/misbehave/src",
        "tests/guests/misbehave/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = root.join("target").join("wasm");
    build_guests(&root, &target_dir);
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!(
        "cargo:rustc-env=EMBER_FUNCTION_WASM={}",
        out.join(GUESTS[0].1).display()
    );
    println!(
        "cargo:rustc-env=EMBER_MISBEHAVE_WASM={}",
        out.join(GUESTS[1].1).display()
    );
}

fn build_guests(root: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir)
        // Guests ship without debug info; the host's profile keeps line tables for backtraces.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    for (package, _) in GUESTS {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .expect("failed to run cargo for the guest components");
    if !status.success() {
        panic!(
            "building the wasm32-wasip2 guests failed; is the target installed? \
             (`rustup target add wasm32-wasip2`, done by scripts/setup)"
        );
    }
}
