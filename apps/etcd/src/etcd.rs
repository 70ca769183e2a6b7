//! Connecting to etcd, and the prefix rules shared by both sides.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::apply::PROGRESS_ROOT;

/// A client of exactly one member (no fail-over to others): `endpoint` is `host:port` or a
/// URL.
pub async fn connect_one(endpoint: &str) -> Result<Client, etcd_client::Error> {
    Client::connect([url(endpoint)], Some(options())).await
}

/// A client of a whole cluster (requests go to any reachable member).
pub async fn connect_all(endpoints: &[String]) -> Result<Client, etcd_client::Error> {
    let urls: Vec<String> = endpoints.iter().map(|e| url(e)).collect();
    Client::connect(urls, Some(options())).await
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
}

fn url(endpoint: &str) -> String {
    if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") }
}

/// True if one of `a` and `b` is a prefix of the other (their key ranges overlap).
pub fn overlaps(a: &[u8], b: &[u8]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Checks the prefixes a sidecar sends and receives: non-empty, disjoint from each other
/// (otherwise mirrored writes would be sent back: an echo loop) and from the progress keys.
pub fn check_prefixes(send: Option<&str>, receive: Option<&str>) -> Result<(), String> {
    for (what, p) in [("send", send), ("receive", receive)] {
        if let Some(p) = p {
            if p.is_empty() {
                return Err(format!("the {what} prefix is empty: it would mirror the whole key space"));
            }
            if overlaps(p.as_bytes(), PROGRESS_ROOT.as_bytes()) {
                return Err(format!("the {what} prefix {p:?} overlaps the progress keys under {PROGRESS_ROOT:?}"));
            }
        }
    }
    if let (Some(s), Some(r)) = (send, receive)
        && overlaps(s.as_bytes(), r.as_bytes())
    {
        return Err(format!(
            "the send prefix {s:?} and the receive prefix {r:?} overlap: mirrored writes would be sent back (an echo loop); give each cluster a prefix of its own"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefixes(Some("/a/"), Some("/b/")).is_ok());
        assert!(check_prefixes(Some("/a/"), None).is_ok());
        assert!(check_prefixes(Some("/a/"), Some("/a/x/")).is_err());
        assert!(check_prefixes(Some("/a"), Some("/ab/")).is_err());
        assert!(check_prefixes(Some(""), None).is_err());
        assert!(check_prefixes(None, Some("/picsou/")).is_err());
        assert!(check_prefixes(None, Some("/")).is_err());
    }
}
