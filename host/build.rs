//! Builds the guest components (`wasm32-wasip2`) with the host, so `cargo build --release` at the
//! root yields both `ember` and the functions it serves: the wasi-nn variant, the static file
//! server and the misbehaving test guest into `target/wasm`, and the two in-guest variants (tract
//! inside the guest, for hosts without wasi-nn: `embedded`, WASI only, and `spin`, with Spin's
//! APIs) into `target/wasm-embedded`, before `ember preinit` snapshots them. Nested cargo runs use
//! their own target dirs, so they never contend for the outer build's lock, and the wasi-nn and
//! in-guest variants of `ember-function` never overwrite each other; the two in-guest variants
//! share one target dir (and so one compiled tract) and are copied aside after each build. It also generates the KServe v2 gRPC
//! service from `proto/kserve_v2.proto` (protox compiles it: no `protoc` needed).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a guest's `.wasm` lands under a nested target dir.
const WASM_OUT: &str = "wasm32-wasip2/release";

fn main() {
    generate_grpc();
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in [
        "function/src",
        "function/wit",
        "function/Cargo.toml",
        "contract/src",
        "contract/Cargo.toml",
        "tests/guests/misbehave/src",
        "tests/guests/misbehave/Cargo.toml",
        "sites/fileserver/src",
        "sites/fileserver/Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target = root.join("target");
    let wasi_nn = target.join("wasm");
    build_guests(
        &root,
        &wasi_nn,
        &[
            "-p",
            "ember-function",
            "-p",
            "ember-misbehave",
            "-p",
            "ember-fileserver",
        ],
    );
    for (name, file) in [
        ("EMBER_FUNCTION_WASM", "ember_function.wasm"),
        ("EMBER_MISBEHAVE_WASM", "ember_misbehave.wasm"),
        ("EMBER_FILESERVER_WASM", "ember_fileserver.wasm"),
    ] {
        let path = wasi_nn.join(WASM_OUT).join(file);
        println!("cargo:rustc-env={name}={}", path.display());
    }
    let in_guest = target.join("wasm-embedded");
    for (name, feature) in [
        ("EMBER_EMBEDDED_WASM", "embedded"),
        ("EMBER_SPIN_WASM", "spin"),
    ] {
        build_guests(
            &root,
            &in_guest,
            &["-p", "ember-function", "--features", feature],
        );
        let built = in_guest.join(WASM_OUT).join("ember_function.wasm");
        let aside = in_guest.join(format!("ember_function_{feature}.wasm"));
        std::fs::copy(&built, &aside).expect("copying the in-guest build aside");
        println!("cargo:rustc-env={name}={}", aside.display());
    }
}

fn build_guests(root: &Path, target_dir: &Path, packages: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir)
        .args(packages)
        // Guests ship without debug info; the host's profile keeps line tables for backtraces.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("failed to run cargo for the guest components");
    if !status.success() {
        panic!(
            "building the wasm32-wasip2 guests failed; is the target installed? \
             (`rustup target add wasm32-wasip2`, done by scripts/setup)"
        );
    }
}

/// The gRPC service's server side and messages (`tonic::include_proto!("inference")`). The
/// metadata replies also deserialize from v2 REST's JSON, whose shapes they share; byte fields are
/// `Bytes`, so tensor data is never copied.
fn generate_grpc() {
    const PROTO: &str = "proto/kserve_v2.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"]).expect("the .proto compiles");
    let json = "#[derive(serde::Deserialize)] #[serde(default)]";
    tonic_prost_build::configure()
        .build_client(false)
        .build_transport(false)
        .bytes(".inference")
        .type_attribute(".inference.ServerMetadataResponse", json)
        // Also matches the nested TensorMetadata.
        .type_attribute(".inference.ModelMetadataResponse", json)
        .compile_fds(descriptors)
        .expect("the gRPC service generates");
}
