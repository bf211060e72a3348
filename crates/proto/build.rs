//! Compiles `proto/roster/v1/*.proto` with protox (a pure-Rust protobuf
//! compiler, so no `protoc` is needed) and generates tonic clients and
//! servers plus a file descriptor set for gRPC reflection.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let dir = root.join("roster/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // `compile_fds` does not write the descriptor set itself, so write it here
    // for reflection.
    std::fs::write(out.join("roster_descriptor.bin"), fds.encode_to_vec())?;
    // Type names let events pack any message into `Any` by its full name.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure().compile_fds_with_config(fds, config)?;
    Ok(())
}
