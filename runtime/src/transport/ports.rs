//! Free loopback ports for tests and benchmarks that start transports on this machine.
//!
//! Binding port 0 and closing the listener yields a port nobody holds *now*, but the kernel
//! may hand the same port to the next `bind(0)`: two replicas of one test then share an
//! address, and a replica dialling the other connects to itself (seen in CI: a hello for the
//! wrong replica, rejected). [`free_loopback_addr`] never returns a port twice per process.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Ports [`free_loopback_addr`] handed out in this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A `127.0.0.1` address whose port no listener holds at the time of the call and that this
/// process has not been given before.
pub fn free_loopback_addr() -> io::Result<SocketAddr> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = guard.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        if seen.insert(addr.port()) {
            return Ok(addr);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, "no loopback port left that was not handed out already"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let mut ports = HashSet::new();
        for _ in 0..200 {
            let a = free_loopback_addr().unwrap();
            assert!(a.ip().is_loopback());
            assert!(ports.insert(a.port()), "port {} handed out twice", a.port());
        }
    }
}
