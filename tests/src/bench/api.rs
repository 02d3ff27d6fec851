//! Timing netd's API without process-spawn noise. The daemon serves only
//! callers in its own network namespace (or a guest's), judged by the
//! calling process, so the calls are made by a helper process started in
//! the sandbox's host namespace (`netd-bench api-helper SOCKET`): it reads
//! one request per line on stdin, makes it with `netd::client::Client`, and
//! answers with the time the call took, measured around the call alone.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, anyhow, bail};
use netd::client::Client;
use serde_json::{Value, json};

use crate::Sandbox;

/// The helper's side: serves requests from stdin until it closes.
pub fn serve_helper(socket: &Path) -> Result<()> {
    let client = Client::new(socket);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let request: Value = serde_json::from_str(&line?)?;
        let method = request["method"].as_str().unwrap_or("GET");
        let path = request["path"].as_str().unwrap_or("/");
        let body = &request["body"];
        let start = Instant::now();
        let result: Result<Value> = match method {
            "GET" => client.get(path),
            "POST" => client.post(path, body),
            "PUT" => client.put(path, body),
            "DELETE" => client.delete(path).map(|()| Value::Null),
            other => Err(anyhow!("unknown method {other}")),
        };
        let us = start.elapsed().as_secs_f64() * 1e6;
        let answer = match result {
            Ok(body) => json!({"us": us, "body": body}),
            Err(err) => json!({"us": us, "error": format!("{err:#}")}),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// The bench's side: a helper process in a sandbox's host namespace.
pub struct ApiHelper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ApiHelper {
    pub fn start(sb: &Sandbox, socket: &Path) -> Result<ApiHelper> {
        let exe = std::env::current_exe()?;
        let mut child = sb
            .host
            .command(&exe)
            .arg("api-helper")
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the API helper")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(ApiHelper {
            child,
            stdin,
            stdout,
        })
    }

    /// One API call: how long it took (µs) and its answer.
    pub fn call(&mut self, method: &str, path: &str, body: Value) -> Result<(f64, Value)> {
        let request = json!({"method": method, "path": path, "body": body});
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the API helper exited");
        }
        let answer: Value = serde_json::from_str(&line)?;
        if let Some(error) = answer["error"].as_str() {
            bail!("{method} {path}: {error}");
        }
        Ok((
            answer["us"].as_f64().unwrap_or(f64::NAN),
            answer["body"].clone(),
        ))
    }
}

impl Drop for ApiHelper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
