//! The JSON state file of netd before the SQLite store (`state.json`): read
//! once, to import it, and by `netd state restore` from a JSON file.

use std::{fs, io, path::Path};

use crate::model::State;

/// The state file older netd versions wrote.
pub const LEGACY_STATE_FILE: &str = "state.json";
/// What an imported [`LEGACY_STATE_FILE`] is renamed to: kept, never read
/// again.
pub const IMPORTED_STATE_FILE: &str = "state.json.imported";

/// Why a JSON state file could not be read.
#[derive(Debug)]
pub enum JsonError {
    Read(io::Error),
    Parse(serde_json::Error),
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Read(err) => write!(f, "cannot read it: {err}"),
            JsonError::Parse(err) => write!(f, "it is not a netd state: {err}"),
        }
    }
}

/// The state in the JSON file at `path`; `None` if there is no such file.
pub fn read(path: &Path) -> Result<Option<State>, JsonError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        // A state directory that is not there yet (or is no directory,
        // which the first save reports) holds no file.
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(JsonError::Read(err)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(JsonError::Parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_none_and_a_bad_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEGACY_STATE_FILE);
        assert!(read(&path).unwrap().is_none());
        fs::write(&path, b"{\"networks\": ").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.starts_with("it is not a netd state"), "{err}");
        fs::write(&path, b"{\"networks\": {}}").unwrap();
        assert_eq!(read(&path).unwrap(), Some(State::default()));
    }
}
