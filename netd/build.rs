//! Builds the TC programs of `netd-ebpf` (nightly, bpf target, bpf-linker)
//! so that `netd` can embed the object file.

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netd-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
