//! A guest's MAC address as users write it (`--mac 02:42:ac:11:00:02`) and
//! as the state stores it: its parsing, its text and the rules a guest's
//! own MAC must follow. Pure.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Six bytes, shown as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

/// Why a MAC cannot be a guest's.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MacError {
    #[error("bad MAC address {0:?}: write six hex pairs separated by ':', e.g. 02:42:ac:11:00:02")]
    Syntax(String),
    #[error(
        "MAC address {0} is multicast (the first byte is odd): a guest needs a unicast MAC, \
         e.g. 02:42:ac:11:00:02"
    )]
    Multicast(Mac),
    #[error(
        "MAC address 00:00:00:00:00:00 is no one's: give a unicast MAC, e.g. 02:42:ac:11:00:02"
    )]
    Zero,
}

impl Mac {
    /// Checks that the MAC can be a guest's own: unicast and not zero
    /// (a broadcast address is multicast too).
    pub fn check_guest(self) -> Result<Mac, MacError> {
        if self.0 == [0; 6] {
            return Err(MacError::Zero);
        }
        if self.0[0] & 0x01 != 0 {
            return Err(MacError::Multicast(self));
        }
        Ok(self)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = MacError;

    /// `aa:bb:cc:dd:ee:ff` (or with `-`), either case.
    fn from_str(text: &str) -> Result<Mac, MacError> {
        let bad = || MacError::Syntax(text.to_owned());
        let parts: Vec<&str> = text.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Mac(bytes))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Mac, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_in_either_case_and_print_in_lower_case() {
        let mac: Mac = "02:42:AC:11:00:0f".parse().unwrap();
        assert_eq!(mac, Mac([0x02, 0x42, 0xac, 0x11, 0x00, 0x0f]));
        assert_eq!(mac.to_string(), "02:42:ac:11:00:0f");
        assert_eq!("02-42-ac-11-00-0f".parse::<Mac>().unwrap(), mac);
    }

    #[test]
    fn malformed_macs_are_refused_with_an_example() {
        for text in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:0f:01",
            "2:42:ac:11:00:0f",
            "zz:42:ac:11:00:0f",
        ] {
            let err = text.parse::<Mac>().unwrap_err();
            assert!(
                err.to_string().contains("e.g. 02:42:ac:11:00:02"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn a_guest_mac_must_be_unicast_and_not_zero() {
        assert!(
            "02:42:ac:11:00:02"
                .parse::<Mac>()
                .unwrap()
                .check_guest()
                .is_ok()
        );
        let multicast = "01:00:5e:00:00:01".parse::<Mac>().unwrap();
        assert_eq!(multicast.check_guest(), Err(MacError::Multicast(multicast)));
        let broadcast = "ff:ff:ff:ff:ff:ff".parse::<Mac>().unwrap();
        assert!(broadcast.check_guest().is_err());
        assert_eq!(Mac([0; 6]).check_guest(), Err(MacError::Zero));
    }

    #[test]
    fn macs_are_stored_as_text() {
        let mac = Mac([0x02, 0, 0, 0, 0, 1]);
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"02:00:00:00:00:01\"");
        assert_eq!(serde_json::from_str::<Mac>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<Mac>("\"nope\"").is_err());
    }
}
