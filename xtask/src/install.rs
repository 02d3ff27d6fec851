//! `cargo xtask install`: the release binary, the systemd unit and a
//! commented default configuration (never overwriting an existing one).

use std::{fs, path::Path};

use anyhow::{Context, Result};

use crate::shell::{self, cargo, workspace_root};

const BINARY: &str = "/usr/local/bin/netd";
const UNIT: &str = "/etc/systemd/system/netd.service";
const CONFIG: &str = "/etc/netd/netd.toml";
/// Where runtimes look for CNI plugins: Debian's plugin directory and the
/// upstream default.
const CNI_PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];
const MAN_DIR: &str = "/usr/local/share/man/man1";
/// Where each shell looks for completions of installed commands.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "/usr/share/bash-completion/completions/netd"),
    ("zsh", "/usr/local/share/zsh/site-functions/_netd"),
    ("fish", "/usr/share/fish/vendor_completions.d/netd.fish"),
];

pub fn run() -> Result<()> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "netd", "-p", "netd-cni"]);
    shell::run(build, "the release build failed")?;
    let root = workspace_root();
    let release = shell::target_dir()?.join("release");
    copy(&release.join("netd"), Path::new(BINARY), 0o755)?;
    for dir in CNI_PLUGIN_DIRS {
        copy(
            &release.join("netd-cni"),
            &Path::new(dir).join("netd-cni"),
            0o755,
        )?;
    }
    copy(
        &root.join("contrib/systemd/netd.service"),
        Path::new(UNIT),
        0o644,
    )?;
    let mut man = std::process::Command::new(BINARY);
    man.args(["man", MAN_DIR]);
    shell::run(man, "writing the man pages failed")?;
    for (shell_name, path) in COMPLETIONS {
        let script = std::process::Command::new(BINARY)
            .args(["completions", shell_name])
            .output()
            .with_context(|| format!("running {BINARY} completions {shell_name}"))?;
        anyhow::ensure!(
            script.status.success(),
            "{BINARY} completions {shell_name} failed"
        );
        if let Some(dir) = Path::new(path).parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(path, &script.stdout).with_context(|| format!("writing {path}"))?;
        println!("install: {path}");
    }
    if Path::new(CONFIG).exists() {
        println!("install: {CONFIG} exists, left as it is");
    } else {
        copy(&root.join("contrib/netd.toml"), Path::new(CONFIG), 0o644)?;
    }
    println!(
        "install: done. Start it with: systemctl daemon-reload && systemctl enable --now netd"
    );
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Copy to a temporary name and rename, so a running binary is replaced
    // atomically rather than overwritten in place.
    let tmp = to.with_extension("netd-new");
    fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))?;
    println!("install: {}", to.display());
    Ok(())
}
