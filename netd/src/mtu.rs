//! A network's MTU (`netd network create --mtu`): the bounds it must keep.
//! Pure.

use thiserror::Error;

/// The smallest MTU netd accepts: 576, the datagram every IPv4 host must
/// accept whole (RFC 791); below it DNS over UDP and TCP's default MSS
/// break.
pub const MIN_MTU: u32 = 576;

/// The largest a veth takes: the ceiling for networks whose packets never
/// leave the host (internal networks, and hosts without a default route).
pub const MAX_MTU: u32 = 65_535;

/// Why an MTU does not fit.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MtuError {
    #[error(
        "--mtu {0} is below {MIN_MTU}, the least every IPv4 host must take: give {MIN_MTU} or more"
    )]
    TooSmall(u32),
    #[error(
        "--mtu {mtu} is larger than {link}'s MTU {link_mtu}, where guests' packets leave the \
         host: give {link_mtu} or less (or make the network --internal)"
    )]
    AboveUplink {
        mtu: u32,
        link: String,
        link_mtu: u32,
    },
    #[error("--mtu {0} is above {MAX_MTU}, the most a veth takes")]
    TooLarge(u32),
}

/// Checks `mtu` for a network: at least [`MIN_MTU`]; for a network whose
/// guests reach the outside, at most the MTU of the host's link there
/// (`uplink`: its name and MTU), so a guest never sends what the host must
/// refuse; else at most [`MAX_MTU`].
pub fn check_network_mtu(
    mtu: u32,
    internal: bool,
    uplink: Option<(&str, u32)>,
) -> Result<u32, MtuError> {
    if mtu < MIN_MTU {
        return Err(MtuError::TooSmall(mtu));
    }
    if mtu > MAX_MTU {
        return Err(MtuError::TooLarge(mtu));
    }
    match uplink {
        Some((link, link_mtu)) if !internal && mtu > link_mtu => Err(MtuError::AboveUplink {
            mtu,
            link: link.to_owned(),
            link_mtu,
        }),
        _ => Ok(mtu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mtu_within_the_uplink_is_taken() {
        assert_eq!(
            check_network_mtu(1400, false, Some(("eth0", 1500))),
            Ok(1400)
        );
        assert_eq!(
            check_network_mtu(1500, false, Some(("eth0", 1500))),
            Ok(1500)
        );
        assert_eq!(
            check_network_mtu(MIN_MTU, false, Some(("eth0", 1500))),
            Ok(MIN_MTU)
        );
    }

    #[test]
    fn an_mtu_above_the_uplink_is_refused_naming_the_link() {
        let err = check_network_mtu(9000, false, Some(("eth0", 1500))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--mtu 9000 is larger than eth0's MTU 1500, where guests' packets leave the host: \
             give 1500 or less (or make the network --internal)"
        );
    }

    #[test]
    fn internal_networks_and_hosts_without_a_way_out_go_up_to_the_veth_limit() {
        assert_eq!(
            check_network_mtu(9000, true, Some(("eth0", 1500))),
            Ok(9000)
        );
        assert_eq!(check_network_mtu(9000, false, None), Ok(9000));
        assert_eq!(
            check_network_mtu(70_000, true, None),
            Err(MtuError::TooLarge(70_000))
        );
    }

    #[test]
    fn an_mtu_below_the_ipv4_minimum_is_refused() {
        let err = check_network_mtu(575, false, Some(("eth0", 1500))).unwrap_err();
        assert_eq!(err, MtuError::TooSmall(575));
        assert!(err.to_string().contains("give 576 or more"), "{err}");
    }
}
