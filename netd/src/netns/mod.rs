//! Named network namespaces, compatible with `ip netns`: a namespace is kept
//! alive by a bind mount of its nsfs file on `/run/netns/NAME`.
//!
//! Work inside a namespace runs on the calling thread, which `setns`es into
//! it for the length of one synchronous closure and back out before anything
//! else can run on it (see [`Netns::run_in`]). A thread per call (what netd
//! did before) cost a 2 MiB stack mapping and a clone per namespace touched,
//! several per request.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::{fs::MetadataExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::Command,
};

mod spares;

pub use spares::keep_spares;

use anyhow::{Context, Result, bail};
use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
};

/// Where `ip netns` keeps its names.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Creates a new named namespace (visible to `ip netns`) with its loopback up
    /// left to the caller. Fails if the name is taken.
    pub fn create(name: &str) -> Result<Netns> {
        validate_name(name)?;
        ensure_run_dir()?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| {
                format!("creating {}: is the namespace name taken?", path.display())
            })?;
        let bind = |source: &str| {
            mount(
                Some(source),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting the new namespace on {}", path.display()))
        };
        let made = match spares::take() {
            Some(spare) => bind(&format!("/proc/self/fd/{}", spare.as_raw_fd())),
            None => Inside::new_namespace().and_then(|_inside| bind("/proc/thread-self/ns/net")),
        };
        if let Err(err) = made {
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        Self::open_path(name, &path)
    }

    /// Opens an existing namespace by its `ip netns` name.
    pub fn open(name: &str) -> Result<Netns> {
        validate_name(name)?;
        Self::open_path(name, &Path::new(NETNS_RUN_DIR).join(name))
    }

    /// Opens a namespace by any nsfs path (`/proc/PID/ns/net`, a runtime's bind mount).
    pub fn open_path(name: &str, path: &Path) -> Result<Netns> {
        let file = File::open(path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        Ok(Netns {
            name: name.to_string(),
            path: path.to_path_buf(),
            file,
        })
    }

    /// The namespace's identity: the device and inode of its nsfs file
    /// (two paths name one namespace exactly when these match). An error if
    /// the file is no network namespace at all.
    pub fn identity(&self) -> Result<(u64, u64)> {
        // NS_GET_NSTYPE (_IO(0xb7, 0x3)): the namespace type of an nsfs file;
        // any other file fails (ENOTTY) or names another kind.
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        // SAFETY: the ioctl takes no argument and only reads the open fd.
        let kind = unsafe { libc::ioctl(self.file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind != libc::CLONE_NEWNET {
            bail!(
                "{} is no network namespace file ({})",
                self.path.display(),
                if kind < 0 {
                    "not a namespace at all"
                } else {
                    "a namespace of another kind"
                }
            );
        }
        let meta = self
            .file
            .metadata()
            .with_context(|| format!("stat of {}", self.path.display()))?;
        Ok((meta.dev(), meta.ino()))
    }

    /// Whether a namespace of that name exists in `/run/netns`.
    pub fn exists(name: &str) -> bool {
        Path::new(NETNS_RUN_DIR).join(name).exists()
    }

    /// Removes a named namespace. The kernel frees it once no process, socket
    /// or open handle refers to it any more. Missing names are not an error.
    pub fn delete(name: &str) -> Result<()> {
        validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        if !path.exists() {
            return Ok(());
        }
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(err) => return Err(err).with_context(|| format!("unmounting {}", path.display())),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Names in `/run/netns` that start with `prefix`, sorted.
    pub fn list_with_prefix(prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(NETNS_RUN_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The nsfs inode: two handles on the same namespace share it.
    pub fn inode(&self) -> Result<u64> {
        Ok(self.file.metadata()?.ino())
    }

    /// The index of interface `iface` in this namespace.
    pub fn ifindex(&self, iface: &str) -> Result<u32> {
        self.run_in(|| nix::net::if_::if_nametoindex(iface))?
            .with_context(|| format!("no interface {iface} in {}", self.name()))
    }

    /// The MAC address of interface `iface` in this namespace: one ioctl
    /// (`SIOCGIFHWADDR`), not a dump of every link (a network's namespace
    /// holds a port per guest, and guest add asks for its bridge's MAC).
    pub fn mac(&self, iface: &str) -> Result<[u8; 6]> {
        self.run_in(|| hardware_address(iface))?
            .with_context(|| format!("no MAC address for {iface} in {}", self.name()))
    }

    /// Runs `f` inside this namespace and returns its result. Sockets made
    /// inside stay bound to the namespace afterwards.
    ///
    /// `f` runs on the calling thread, which enters the namespace first and
    /// returns to its own when `f` returns or unwinds. `f` is synchronous, so
    /// nothing else (no other tokio task) runs on the thread meanwhile.
    pub fn run_in<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let _inside = Inside::enter(self.file.as_fd())
            .with_context(|| format!("entering network namespace {}", self.name))?;
        Ok(f())
    }

    /// A command that will run inside this namespace (like `ip netns exec`,
    /// without remounting /sys).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; the fd outlives the fork since the
        // parent keeps `self` alive while spawning.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Same as [`Netns::command`], for tokio.
    pub fn tokio_command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The hardware address of `iface` in the calling thread's namespace.
fn hardware_address(iface: &str) -> io::Result<[u8; 6]> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no interface can be named {iface:?}"),
        ));
    }
    // SAFETY: plain socket(2); the fd is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr within
    // the ifreq it is given.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the hwaddr member of the union.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (byte, value) in mac.iter_mut().zip(data) {
        *byte = value as u8;
    }
    Ok(mac)
}

/// The calling thread inside another network namespace until dropped, when
/// it returns to the one it was in.
struct Inside {
    home: File,
}

impl Inside {
    fn enter(target: BorrowedFd<'_>) -> Result<Inside> {
        let inside = Inside::leaving_home()?;
        setns(target, CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(inside)
    }

    /// Inside a namespace made for the calling thread alone.
    fn new_namespace() -> Result<Inside> {
        let inside = Inside::leaving_home()?;
        unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        Ok(inside)
    }

    fn leaving_home() -> Result<Inside> {
        let home = File::open("/proc/thread-self/ns/net")
            .context("opening the thread's own network namespace")?;
        Ok(Inside { home })
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        if let Err(err) = setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET) {
            // A thread left in another namespace would open the daemon's
            // next sockets there: no way to go on safely.
            eprintln!("netd: cannot return to the thread's own network namespace: {err}");
            std::process::abort();
        }
    }
}

/// Namespace names become file names under /run/netns.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.contains('/') || name.starts_with('.') {
        bail!("invalid namespace name {name:?}: use 1-200 characters, no '/' and no leading '.'");
    }
    Ok(())
}

/// Whether this process has made /run/netns a shared mount already.
static RUN_DIR_SHARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes /run/netns a shared mount point, as iproute2 does, so that namespaces
/// created here are visible in other mount namespaces too. Once per process:
/// `MS_SHARED | MS_REC` walks every mount beneath it, one per namespace
/// (the kernel's `invent_group_ids`), a tenth of a guest add's time at
/// 10,000 guests, growing with each.
fn ensure_run_dir() -> Result<()> {
    use std::sync::atomic::Ordering;
    if RUN_DIR_SHARED.load(Ordering::Relaxed) && Path::new(NETNS_RUN_DIR).is_dir() {
        return Ok(());
    }
    shared_run_dir()?;
    RUN_DIR_SHARED.store(true, Ordering::Relaxed);
    Ok(())
}

fn shared_run_dir() -> Result<()> {
    fs::create_dir_all(NETNS_RUN_DIR).with_context(|| format!("creating {NETNS_RUN_DIR}"))?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    if shared().is_ok() {
        return Ok(());
    }
    // Not a mount point yet: bind it onto itself first.
    mount(
        Some(NETNS_RUN_DIR),
        NETNS_RUN_DIR,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting {NETNS_RUN_DIR} onto itself"))?;
    shared().with_context(|| format!("making {NETNS_RUN_DIR} a shared mount"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopbacks_hardware_address_is_all_zeroes() {
        assert_eq!(hardware_address("lo").unwrap(), [0; 6]);
    }

    #[test]
    fn a_missing_or_impossible_interface_is_an_error() {
        let missing = hardware_address("netd-no-such0").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENODEV), "{missing}");
        let long = hardware_address("a-name-longer-than-ifnamsiz").unwrap_err();
        assert!(
            long.to_string().contains("no interface can be named"),
            "{long}"
        );
        assert!(hardware_address("").is_err());
    }
}
