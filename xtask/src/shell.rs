//! Running commands from the workspace root, echoing them first.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// Where cargo puts build output: `cargo metadata`'s `target_directory`,
/// which follows `CARGO_TARGET_DIR` and `build.target-dir`.
pub fn target_dir() -> Result<PathBuf> {
    let mut metadata = cargo();
    metadata
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit());
    let out = metadata
        .output()
        .context("running cargo metadata to find the target directory")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed ({}): see its output above",
            out.status
        );
    }
    parse_target_dir(&out.stdout)
}

fn parse_target_dir(metadata: &[u8]) -> Result<PathBuf> {
    let value: serde_json::Value =
        serde_json::from_slice(metadata).context("cargo metadata printed no JSON")?;
    value["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata gave no target_directory")
}

/// Runs `command` with inherited stdio from the workspace root; fails with
/// `hint` if it exits non-zero.
pub fn run(mut command: Command, hint: &str) -> Result<()> {
    command.current_dir(workspace_root());
    println!("$ {}", describe(&command));
    let status = command
        .status()
        .with_context(|| format!("starting {}", describe(&command)))?;
    if !status.success() {
        bail!("{} failed ({status}): {hint}", describe(&command));
    }
    Ok(())
}

/// Runs quietly and returns stdout, or None if it could not run or failed.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_directory_is_cargos() {
        let json = br#"{"packages": [], "target_directory": "/tmp/elsewhere", "version": 1}"#;
        assert_eq!(
            parse_target_dir(json).unwrap(),
            PathBuf::from("/tmp/elsewhere")
        );
        assert!(parse_target_dir(b"{}").is_err());
    }

    #[test]
    fn cargo_target_dir_moves_the_target_directory() {
        let custom = std::env::temp_dir().join("netd-xtask-target-dir-test");
        let mut metadata = cargo();
        metadata
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &custom);
        let out = metadata.output().unwrap();
        assert!(out.status.success());
        assert_eq!(parse_target_dir(&out.stdout).unwrap(), custom);
        // Without it: the workspace's own target/ (unless the caller set one).
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            let mut plain = cargo();
            plain
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .current_dir(workspace_root())
                .env_remove("CARGO_TARGET_DIR");
            let out = plain.output().unwrap();
            let dir = parse_target_dir(&out.stdout).unwrap();
            assert!(dir.ends_with("target"), "{}", dir.display());
        }
    }
}
