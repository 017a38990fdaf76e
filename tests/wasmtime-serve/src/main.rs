//! `wasmtime serve`, exactly as wasmtime-cli 48.0.8 ships it: the command's own argument parser
//! and `execute`, nothing of Ember's in between. Linking wasmtime-cli as a library inside the
//! workspace compiles the wasmtime stack once for both `ember` and this binary, instead of a
//! second, separate `cargo install wasmtime-cli`.

use clap::Parser;

fn main() -> wasmtime::Result<()> {
    wasmtime_cli::commands::ServeCommand::parse().execute()
}
