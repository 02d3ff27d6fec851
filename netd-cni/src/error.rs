//! CNI error objects: the spec's well-known codes (1-11, 50-51) and netd's
//! own (100 and up), each with a message that says what to do.

use serde::Serialize;

/// The spec's codes.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// netd's: the daemon refused the request (its message passes through).
    pub const DAEMON_REFUSED: u32 = 100;
    /// netd's, CHECK: the attachment is gone from netd.
    pub const ATTACHMENT_MISSING: u32 = 101;
    /// netd's, CHECK: the attachment differs from what was set up.
    pub const ATTACHMENT_DIFFERS: u32 = 102;
}

/// A CNI error object, printed on stdout with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The object as the spec writes it, for the given `cniVersion`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("serializable");
        value["cniVersion"] = cni_version.into();
        value
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

pub type CniResult<T> = Result<T, CniError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_object_carries_version_code_and_message() {
        let err = CniError::new(code::INVALID_ENV, "CNI_NETNS is not set").with_details("ADD");
        assert_eq!(
            err.to_json("1.1.0"),
            serde_json::json!({
                "cniVersion": "1.1.0",
                "code": 4,
                "msg": "CNI_NETNS is not set",
                "details": "ADD"
            })
        );
        let bare = CniError::new(code::IO, "x").to_json("1.0.0");
        assert!(bare.get("details").is_none(), "{bare}");
    }
}
