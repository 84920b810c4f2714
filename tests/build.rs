//! Builds the eBPF test fixtures (tests/fixtures) for the BPF target.
fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ispf-test-fixtures",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom("nightly"),
    )
}
