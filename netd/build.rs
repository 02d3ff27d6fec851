//! Builds the TC programs of `netd-ebpf` (nightly, bpf target, bpf-linker)
//! so that `netd` can embed the object file.

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-ebpf");
    // aya-build watches the eBPF crate only; the programs are built from
    // netd-common's layouts and constants too.
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-common/src")
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netd-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
