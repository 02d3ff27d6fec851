//! The CLI's side of the API: blocking HTTP/1.1 over the daemon's unix
//! socket. Small on purpose: one request per connection, JSON in and out.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Serialize, de::DeserializeOwned};

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call("GET", path, None)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call("POST", path, Some(serde_json::to_vec(body)?))
    }

    pub fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call("PUT", path, Some(serde_json::to_vec(body)?))
    }

    /// A POST without a body, for actions that take no parameters.
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call("POST", path, None)
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.call("DELETE", path, None)
    }

    /// A GET whose answer is text, not JSON (`/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String> {
        let (status, body) = self.request("GET", path, None)?;
        if !(200..300).contains(&status) {
            bail!("{}", error_message(&body));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A GET whose answer is a stream of lines (`/v1/events`): `each` gets
    /// every line as it arrives, until it returns false or the daemon ends
    /// the stream.
    pub fn get_lines(&self, path: &str, mut each: impl FnMut(&str) -> Result<bool>) -> Result<()> {
        use std::io::BufRead;
        let mut stream = self.connect()?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: netd\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes())?;
        let mut reader = std::io::BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("malformed status line from the daemon"))?;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!("the daemon closed the connection mid-answer");
            }
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            chunked |= line.starts_with("transfer-encoding:") && line.contains("chunked");
        }
        if !(200..300).contains(&status) || !chunked {
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest)?;
            let body = if chunked { dechunk(&rest)? } else { rest };
            bail!("{}", error_message(&body));
        }
        let mut pending = Vec::new();
        loop {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line)? == 0 {
                return Ok(());
            }
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| anyhow!("malformed chunk size from the daemon"))?;
            if size == 0 {
                return Ok(());
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            pending.extend_from_slice(&chunk[..size]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if !each(String::from_utf8_lossy(&line[..end]).as_ref())? {
                    return Ok(());
                }
            }
        }
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).with_context(|| {
            format!(
                "cannot reach the netd daemon at {}: is it running (`netd daemon`, or `systemctl start netd`)? Another socket: --socket PATH",
                self.socket.display()
            )
        })
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let (status, body) = self.request(method, path, body.as_deref())?;
        if !(200..300).contains(&status) {
            bail!("{}", error_message(&body));
        }
        serde_json::from_slice(&body).with_context(|| {
            format!("the daemon's answer to {method} {path} is not what this CLI expects")
        })
    }

    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>)> {
        let mut stream = self.connect()?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: netd\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .context("reading the daemon's answer")?;
        parse_response(&response)
    }
}

/// The daemon's `{"error": "..."}`, or the body as it is.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// Percent-encodes one path segment (names are validated by the daemon, but
/// whatever the user typed must still make a well-formed request). Everything
/// but unreserved characters is encoded, so a port spec's '/' and ':' stay
/// inside its segment.
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>)> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the daemon closed the connection mid-answer"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line from the daemon"))?;
    let body = &response[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("malformed chunked body"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow!("malformed chunk size"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_body_with_content_length() {
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 11\r\n\r\n{\"error\":1}";
        let (status, body) = parse_response(raw).unwrap();
        assert_eq!(status, 404);
        assert_eq!(body, b"{\"error\":1}");
    }

    #[test]
    fn reads_a_chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().1, b"abcde");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("web-1"), "web-1");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn port_specs_stay_one_segment() {
        assert_eq!(
            segment("0.0.0.0:8000-8010:80-90/udp"),
            "0.0.0.0%3A8000-8010%3A80-90%2Fudp"
        );
    }
}
