//! systemd readiness (`Type=notify`): `READY=1` once the database is migrated and requests are
//! served, `STOPPING=1` when a stop begins, and a `STATUS=` line for `systemctl status`. Sent
//! as one datagram to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); without
//! that variable nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1\nSTATUS=…`) to systemd, if it is listening.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, socket = ?path, "cannot tell systemd our state");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets are Linux-only"));
        }
    }
    sock.send_to(state.as_bytes(), path)?;
    Ok(())
}
