//! Labels: short key/value pairs a client attaches to a guest to say what it
//! is for (`netd guest add --label k=v`). netd stores and shows them and
//! decides nothing by them; its clients do, e.g. the CNI plugin records the
//! container and interface an attachment was made for (`cni.container_id`,
//! `cni.ifname`, `cni.config`), so that its GC removes only what it made.

use std::collections::BTreeMap;

use thiserror::Error;

pub type Labels = BTreeMap<String, String>;

pub const MAX_LABELS: usize = 16;
pub const MAX_KEY_LEN: usize = 63;
pub const MAX_VALUE_LEN: usize = 256;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LabelError {
    #[error("at most {MAX_LABELS} labels per guest, got {0}")]
    TooMany(usize),
    #[error(
        "invalid label key {0:?}: use 1-{MAX_KEY_LEN} characters from a-z, 0-9, '.', '_', '-' and '/', starting with a letter"
    )]
    Key(String),
    #[error(
        "invalid value for label {key:?}: at most {MAX_VALUE_LEN} printable characters, no spaces"
    )]
    Value { key: String },
    #[error("a label is KEY=VALUE, got {0:?}")]
    Syntax(String),
}

/// Checks every key and value.
pub fn validate(labels: &Labels) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany(labels.len()));
    }
    for (key, value) in labels {
        let key_ok = (1..=MAX_KEY_LEN).contains(&key.len())
            && key.as_bytes()[0].is_ascii_lowercase()
            && key
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/'));
        if !key_ok {
            return Err(LabelError::Key(key.clone()));
        }
        if value.len() > MAX_VALUE_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(LabelError::Value { key: key.clone() });
        }
    }
    Ok(())
}

/// Parses `KEY=VALUE` (the CLI's `--label`).
pub fn parse(text: &str) -> Result<(String, String), LabelError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| LabelError::Syntax(text.to_owned()))?;
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cni_labels_are_valid() {
        let l = labels(&[
            ("cni.container_id", "0123abcd"),
            ("cni.ifname", "eth0"),
            ("cni.config", "netd-web"),
            ("app", ""),
        ]);
        assert_eq!(validate(&l), Ok(()));
    }

    #[test]
    fn bad_keys_and_values_are_refused_by_name() {
        assert_eq!(
            validate(&labels(&[("Upper", "x")])),
            Err(LabelError::Key("Upper".into()))
        );
        assert_eq!(
            validate(&labels(&[("1st", "x")])),
            Err(LabelError::Key("1st".into()))
        );
        assert_eq!(
            validate(&labels(&[("k", "a b")])),
            Err(LabelError::Value { key: "k".into() })
        );
        let many: Labels = (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(validate(&many), Err(LabelError::TooMany(17)));
    }

    #[test]
    fn parses_key_equals_value() {
        assert_eq!(parse("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse("novalue"), Err(LabelError::Syntax("novalue".into())));
    }
}
