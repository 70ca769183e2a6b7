//! A digest of a cluster's keys and values under a prefix, at one revision, read in pages.

use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use serde::Serialize;

/// What a digest covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Keys under the prefix.
    pub keys: u64,
    /// Key and value bytes.
    pub bytes: u64,
    /// BLAKE3 over every (key length, key, value length, value) in key order, hex.
    pub hash: String,
    /// The cluster revision it was read at.
    pub at_revision: u64,
}

/// The end of the key range of `prefix` (etcd's prefix range end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Digest of every key under `prefix`, read at one revision in pages of 1,000 keys.
pub async fn digest(client: &mut Client, prefix: &[u8]) -> Result<Digest, etcd_client::Error> {
    let end = prefix_end(prefix);
    let mut hasher = blake3::Hasher::new();
    let (mut keys, mut bytes) = (0u64, 0u64);
    let mut from = prefix.to_vec();
    let mut at: i64 = 0;
    loop {
        let mut opts =
            GetOptions::new().with_range(end.clone()).with_limit(1000).with_sort(SortTarget::Key, SortOrder::Ascend);
        if at > 0 {
            opts = opts.with_revision(at);
        }
        let resp = client.get(from.clone(), Some(opts)).await?;
        if at == 0 {
            at = resp.header().map_or(0, |h| h.revision());
        }
        for kv in resp.kvs() {
            hasher.update(&(kv.key().len() as u64).to_le_bytes());
            hasher.update(kv.key());
            hasher.update(&(kv.value().len() as u64).to_le_bytes());
            hasher.update(kv.value());
            keys += 1;
            bytes += (kv.key().len() + kv.value().len()) as u64;
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    Ok(Digest { keys, bytes, hash: hasher.finalize().to_hex().to_string(), at_revision: at as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
