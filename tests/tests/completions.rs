//! Shell completion scripts and man pages come from the CLI's own
//! definitions: every subcommand is in them.

use std::process::Command;

use netd_tests::netd::netd_binary;

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
fn completion_scripts_know_every_subcommand() {
    for (shell, marker) in [
        ("bash", "_netd()"),
        ("zsh", "#compdef netd"),
        ("fish", "complete -c netd"),
    ] {
        let script = netd(&["completions", shell]);
        assert!(
            script.contains(marker),
            "{shell}: {}",
            &script[..200.min(script.len())]
        );
        for sub in [
            "network",
            "guest",
            "port",
            "partition",
            "events",
            "metrics",
            "completions",
        ] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let out = Command::new(netd_binary())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
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
