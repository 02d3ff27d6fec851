//! netd's one nft layer, used by the host's table (`dataplane::hostnat`),
//! the nftables dataplane and `netd status`: here, [`Nft`] feeds scripts to
//! `nft -f -` inside one network namespace (each script is one transaction)
//! and reads tables back as JSON, the only place netd runs `nft`; `render`
//! writes the scripts from plain data; `check` compares a listing with the
//! shape netd gave a table (drift).

pub mod check;
pub mod render;

use std::{
    io::Write as _,
    path::Path,
    process::{Output, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// `nft` in one namespace: a given one, or the daemon's own when None.
#[derive(Debug)]
pub struct Nft {
    netns: Option<Netns>,
}

impl Nft {
    pub fn new(netns: Option<Netns>) -> Nft {
        Nft { netns }
    }

    /// `nft` in the namespace at `path`; `name` is what messages call it.
    pub fn open(name: &str, path: &Path) -> Result<Nft> {
        Ok(Nft::new(Some(Netns::open_path(name, path)?)))
    }

    /// The namespace, when it is not the daemon's own.
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// Where `nft` runs, for messages.
    pub fn place(&self) -> String {
        match &self.netns {
            Some(ns) => format!("network namespace {}", ns.name()),
            None => "the daemon's network namespace".to_owned(),
        }
    }

    /// Runs `script` as one nft transaction; an empty script runs nothing.
    pub fn apply(&self, script: &str) -> Result<()> {
        if script.is_empty() {
            return Ok(());
        }
        self.run(&["-f", "-"], Some(script)).map(|_| ())
    }

    /// `nft -j list table FAMILY NAME`, parsed; None when there is no such
    /// table.
    pub fn table(&self, table: &str) -> Result<Option<serde_json::Value>> {
        let (family, name) = table.split_once(' ').unwrap_or(("inet", table));
        let args = ["-j", "list", "table", family, name];
        match self.run(&args, None) {
            Ok(output) => serde_json::from_slice(&output.stdout)
                .map(Some)
                .with_context(|| format!("parsing the JSON of nft {}", args.join(" "))),
            Err(err) if format!("{err:#}").contains("No such file or directory") => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every table in the namespace, as `FAMILY NAME` (`inet netd`).
    pub fn tables(&self) -> Result<Vec<String>> {
        let listing = self.json(&["list", "tables"])?;
        Ok(objects(&listing, "table")
            .filter_map(|t| Some(format!("{} {}", t["family"].as_str()?, t["name"].as_str()?)))
            .collect())
    }

    /// `nft -j ARGS`, parsed.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let output = self.run(&all, None)?;
        serde_json::from_slice(&output.stdout)
            .with_context(|| format!("parsing the JSON of nft {}", all.join(" ")))
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let shown = format!("nft {}", args.join(" "));
        let place = self.place();
        let command = match &self.netns {
            Some(ns) => ns.command("nft"),
            None => std::process::Command::new("nft"),
        };
        let mut command = command;
        let mut child = command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("running {shown} in {place}: is nftables installed (nft on PATH)?")
            })?;
        // The script is written from a second thread while this one drains
        // stdout and stderr, so neither side can block on a full pipe. A
        // write error (nft gone early) is reported after nft's own message.
        let pipe = child.stdin.take();
        let (written, output) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || match (stdin, pipe) {
                (Some(script), Some(mut pipe)) => pipe.write_all(script.as_bytes()),
                _ => Ok(()),
            });
            let output = child.wait_with_output();
            let written = writer.join().expect("writing to a pipe does not panic");
            (written, output)
        });
        let output = output.with_context(|| format!("waiting for {shown}"))?;
        if !output.status.success() {
            bail!(
                "{shown} failed in {place} ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            );
        }
        written.with_context(|| format!("writing the script to {shown}"))?;
        Ok(output)
    }
}

/// The objects of one kind (`table`, `chain`, `rule`, `set`, ...) in nft's
/// JSON.
pub fn objects<'a>(
    listing: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |object| object.get(kind))
}

/// Packets counted by each named counter of a listing.
pub fn counters(listing: &serde_json::Value) -> Vec<(String, u64)> {
    objects(listing, "counter")
        .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c["packets"].as_u64()?)))
        .collect()
}
