//! netd-cni: a CNI 1.1.0 plugin that plugs a container's network namespace
//! into a netd network, as a client of the netd daemon's API.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "netd-web", "plugins": [{
//!    "type": "netd-cni", "network": "web", "socket": "/run/netd/netd.sock",
//!    "capabilities": {"portMappings": true, "ips": true}}]}
//! ```
//!
//! The runtime runs it with `CNI_COMMAND` and the other `CNI_*` variables
//! set and the configuration on stdin; the result (ADD), the version
//! (VERSION) or a CNI error object goes to stdout.

mod attachment;
mod conf;
mod error;
mod plugin;
mod result;

use std::io::Read;

use conf::{Command, Env, NetConf};
use error::{CniError, CniResult, code};

fn main() {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = conf::answer_version(&stdin);
    let outcome = read
        .map_err(|err| {
            CniError::new(
                code::IO,
                format!("reading the network configuration from stdin: {err}"),
            )
        })
        .and_then(|_| run(&stdin));
    match outcome {
        Ok(Some(output)) => println!("{output}"),
        Ok(None) => {}
        Err(err) => {
            println!("{}", err.to_json(&version));
            eprintln!("netd-cni: {err}");
            std::process::exit(1);
        }
    }
}

/// One command: what goes to stdout on success.
fn run(stdin: &[u8]) -> CniResult<Option<serde_json::Value>> {
    let env = Env::from_lookup(|name| std::env::var(name).ok())?;
    if env.command == Command::Version {
        return Ok(Some(serde_json::json!({
            "cniVersion": conf::answer_version(stdin),
            "supportedVersions": conf::SUPPORTED_VERSIONS,
        })));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command {
        Command::Add => {
            let result = plugin::add(&env, &conf)?;
            Ok(Some(serde_json::to_value(result).expect("serializable")))
        }
        Command::Del => plugin::del(&env, &conf).map(|()| None),
        Command::Check => plugin::check(&env, &conf).map(|()| None),
        Command::Gc => plugin::gc(&conf).map(|()| None),
        Command::Status => plugin::status(&conf).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}
