//! Reading `netd status --json` in tests.

use serde_json::Value;

use crate::netd::Netd;

/// `netd status --namespaces --json`: its exit code (3 on drift) and
/// parsed output, every namespace listed.
pub fn status(netd: &Netd) -> (i32, Value) {
    let out = netd.cli(&["status", "--namespaces", "--json"]);
    let code = out.status.code().expect("status exited normally");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

/// The drift lines of a status.
pub fn drift(status: &Value) -> Vec<String> {
    status["drift"]
        .as_array()
        .expect("drift list")
        .iter()
        .map(|d| d.as_str().expect("drift line").to_string())
        .collect()
}

/// A dataplane counter of a zone ("host side" or a network's name); 0 when
/// the status does not list it (only non-zero counters are listed).
pub fn counter(status: &Value, zone: &str, name: &str) -> u64 {
    status["figures"]["counters"]
        .as_array()
        .expect("counters")
        .iter()
        .filter(|z| z["zone"] == zone)
        .flat_map(|z| z["counters"].as_array().cloned().unwrap_or_default())
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_u64())
        .unwrap_or(0)
}
