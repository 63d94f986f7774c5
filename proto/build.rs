//! Compiles `jifen/v1/*.proto` with protox (pure Rust, so no `protoc` on the machine) and
//! writes the file descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "jifen/v1/channel.proto",
    "jifen/v1/portal.proto",
    "jifen/v1/mall.proto",
    "jifen/v1/admin.proto",
    "jifen/v1/bus.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("jifen_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
