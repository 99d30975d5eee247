//! Generates the CRI gRPC code for `imgsvc serve` from cli/proto/.
//!
//! The two services are generated separately: ImageService without default
//! method bodies, so the compiler insists every image RPC is implemented;
//! RuntimeService with them, so the many RPCs we do not serve answer
//! UNIMPLEMENTED. Clients are generated too, for the integration tests.
//!
//! The codec is ours (`crate::serve::codec::CriCodec`): a request that does
//! not decode is the caller's error (INVALID_ARGUMENT), not an internal one.
//! Code that includes the generated files must provide that path; the
//! integration tests alias it to `tonic_prost::ProstCodec`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    for (proto, dir, stubs) in [("proto/cri_image.proto", "image", false), ("proto/cri_runtime.proto", "runtime", true)]
    {
        let out_dir = out.join(dir);
        std::fs::create_dir_all(&out_dir)?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .generate_default_stubs(stubs)
            .codec_path("crate::serve::codec::CriCodec")
            // Credentials must not reach logs: these get a redacting Debug by hand.
            .skip_debug([".runtime.v1.AuthConfig"])
            .out_dir(&out_dir)
            .compile_protos(&[proto], &["proto"])?;
    }
    Ok(())
}
