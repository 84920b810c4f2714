//! Builds the XDP object from `ispf-ebpf` for the BPF target with the
//! nightly toolchain (aya-build), so it is never committed.
use anyhow::anyhow;

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?
        .join("ispf-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ispf-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        // The image's nightly is the one verified with bpf-linker (LLVM 22).
        aya_build::Toolchain::Custom("nightly"),
    )
}
