//! The resolver each network has on its bridge address (port 53, UDP and
//! TCP): guests' names answered from the desired state, other names relayed
//! to the host's resolvers from the daemon's own namespace.
//!
//! - `wire`: the few pieces of the DNS format netd reads and writes (pure);
//! - `directory`: which name is which guest, and who may ask the outside
//!   (pure);
//! - `upstream`: where other names go (`dns_upstreams`, else the host's
//!   /etc/resolv.conf; its parsing is pure) and the relay to them;
//! - `server`: the sockets in each network's namespace and their tasks.
//!
//! Hand-written rather than hickory-server: netd answers A records for its
//! own names and relays everything else byte for byte, which is a header,
//! one question and one record; a full DNS server's dependency tree would
//! be most of the daemon's build for that.

pub mod directory;
pub mod server;
pub mod upstream;
pub mod wire;

pub use directory::{Answer, Directory};
pub use server::Resolvers;

/// The port guests send queries to.
pub const DNS_PORT: u16 = 53;
