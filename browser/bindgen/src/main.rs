//! `ember-bindgen <ember_browser.wasm> <out-dir>`: what `wasm-bindgen --target web` does, through
//! the `wasm-bindgen-cli-support` library the CLI itself wraps. Built with the workspace, it
//! spares a fresh machine a separate `cargo install wasm-bindgen-cli`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use wasm_bindgen_cli_support::Bindgen;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, out_dir] = args.as_slice() else {
        bail!("usage: ember-bindgen <ember_browser.wasm> <out-dir>");
    };
    Bindgen::new()
        .input_path(input)
        .web(true)?
        .typescript(true)
        // Function names are 3 of the module's 16 MB, downloaded by every page load, and
        // only name frames in stack traces.
        .remove_name_section(true)
        // As the CLI does: `init()` without arguments fetches the .wasm beside the JS module.
        .omit_default_module_path(false)
        .generate(out_dir)
        .with_context(|| format!("generating bindings for {}", input.display()))
}
