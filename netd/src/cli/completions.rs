//! `netd completions SHELL` and the hidden `netd man DIR`: generated from
//! the clap definitions, so they never disagree with the CLI.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory as _;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// The shell's registration: at each TAB it runs `COMPLETE=SHELL netd --
/// WORDS`, which answers from the CLI's definitions and, for network and
/// guest names, from the daemon.
pub fn run(args: Args) -> Result<i32> {
    use clap_complete::{
        Shell,
        env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh},
    };
    let shell: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
        Shell::Elvish => &Elvish,
        Shell::PowerShell => &Powershell,
        other => {
            anyhow::bail!("no completion for {other}: use bash, zsh, fish, elvish or powershell")
        }
    };
    shell.write_registration("COMPLETE", "netd", "netd", "netd", &mut std::io::stdout())?;
    Ok(0)
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Where to write netd.1 and one page per subcommand (netd-network-create.1, ...).
    dir: PathBuf,
}

/// Writes a man page for `netd` and for every subcommand, nested ones too.
pub fn man(args: ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut command = super::Cli::command();
    command.build();
    let mut written = 0;
    write_pages(&command, "netd", &args.dir, &mut written)?;
    println!("wrote {written} man pages to {}", args.dir.display());
    Ok(0)
}

fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &std::path::Path,
    written: &mut usize,
) -> Result<()> {
    // clap names are &'static str here; a page per command, once per run.
    let page = command
        .clone()
        .name(&*Box::leak(name.to_owned().into_boxed_str()));
    let mut buffer = Vec::new();
    clap_mangen::Man::new(page).render(&mut buffer)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buffer).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
