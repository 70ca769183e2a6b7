//! Replica addresses: `ip:port` literals, or `host:port` resolved once when the file is read.

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses `ip:port` (IPv6 in brackets) or resolves `host:port`, preferring an IPv4 address
/// when the name has both, so that every process resolving the same file dials the same one.
pub(super) fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected = "expected \"ip:port\" (e.g. \"10.0.0.1:7000\", \"[::1]:7000\") or \"host:port\"";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} has no port; {expected}"));
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host; {expected}"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("port {port:?} of {text:?} is not a number between 0 and 65535"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve host {host:?}: {e}; {expected}"))?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("host {host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_errors() {
        assert_eq!(resolve("10.0.0.1:7000"), Ok("10.0.0.1:7000".parse().unwrap()));
        assert_eq!(resolve("[::1]:7000"), Ok("[::1]:7000".parse().unwrap()));
        assert!(resolve("10.0.0.1").unwrap_err().contains("no port"));
        assert!(resolve(":7000").unwrap_err().contains("no host"));
        assert!(resolve("10.0.0.1:99999").unwrap_err().contains("between 0 and 65535"));
        assert!(resolve("localhost:7000").unwrap().ip().is_loopback());
    }
}
