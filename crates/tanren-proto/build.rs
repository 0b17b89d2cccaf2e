//! Compiles proto/tanren/v1/*.proto with protoc (Debian's protobuf-compiler; scripts/setup.sh installs it).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .compile_protos(&["../../proto/tanren/v1/worker.proto"], &["../../proto"])?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
