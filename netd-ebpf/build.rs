// Emits `bpf_target_arch` so that aya-ebpf picks the right helpers when this
// crate is checked on the host (clippy) rather than built by aya-build.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    aya_build::emit_bpf_target_arch_cfg()?;
    Ok(())
}
