//! Shell completion scripts and man pages come from the CLI's own
//! definitions: every subcommand is in them.

use std::process::Command;

use netd_tests::{
    Sandbox,
    netd::{Netd, netd_binary},
};

fn netd(args: &[&str]) -> String {
    let out = Command::new(netd_binary()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "netd {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completion_scripts_register_and_complete_every_subcommand() {
    for (shell, marker) in [
        ("bash", "COMPLETE=\"bash\""),
        ("zsh", "#compdef netd"),
        ("fish", "complete --keep-order --exclusive --command netd"),
    ] {
        let script = netd(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
    }
    let words = complete(None, &["netd", ""]);
    for sub in [
        "network",
        "guest",
        "port",
        "partition",
        "events",
        "metrics",
        "completions",
    ] {
        assert!(
            words.iter().any(|w| w == sub),
            "{sub} not offered: {words:?}"
        );
    }
    assert!(
        !words.iter().any(|w| w == "man"),
        "the hidden man command is not offered"
    );
    let out = Command::new(netd_binary())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

/// What fish would offer for `words` (the last one being completed), as
/// `netd` answers `COMPLETE=fish netd -- WORDS`.
fn complete(sandbox: Option<(&Sandbox, &Netd)>, words: &[&str]) -> Vec<String> {
    let mut cmd = match sandbox {
        Some((sandbox, _)) => sandbox.host_command(netd_binary().to_str().unwrap()),
        None => Command::new(netd_binary()),
    };
    if let Some((_, netd)) = sandbox {
        cmd.env("NETD_SOCKET", &netd.socket);
    }
    let out = cmd
        .env("COMPLETE", "fish")
        .arg("--")
        .args(words)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

#[test]
fn network_and_guest_names_complete_from_the_daemon() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "web", "app1"]);
    netd.ok(&["guest", "add", "db", "pg"]);
    let with = Some((&sandbox, &netd));
    let complete = |words: &[&str]| -> Vec<String> {
        complete(with, words)
            .into_iter()
            .filter(|w| !w.starts_with('-'))
            .collect()
    };
    assert_eq!(complete(&["netd", "guest", "ls", ""]), ["db", "web"]);
    assert_eq!(complete(&["netd", "network", "rm", "w"]), ["web"]);
    assert_eq!(complete(&["netd", "exec", "web", ""]), ["pg", "app1"]);
    assert_eq!(complete(&["netd", "port", "add", "web", "ap"]), ["app1"]);
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = std::env::temp_dir().join(format!("netd-man-test-{}", std::process::id()));
    let said = netd(&["man", dir.to_str().unwrap()]);
    assert!(said.starts_with("wrote "), "{said}");
    for page in [
        "netd.1",
        "netd-network-create.1",
        "netd-guest-add.1",
        "netd-events.1",
        "netd-partition.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let add = std::fs::read_to_string(dir.join("netd-guest-add.1")).unwrap();
    assert!(add.contains("label"), "options are documented");
    assert!(
        !dir.join("netd-man.1").exists(),
        "the hidden man command has no page"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reader that goes away early (`netd ... | head`) ends the CLI the way
/// it ends other Unix tools (SIGPIPE), not with a panic.
#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    use std::{os::unix::process::ExitStatusExt, process::Stdio};
    let mut child = Command::new(netd_binary())
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The read end closed before the CLI writes the script.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}
