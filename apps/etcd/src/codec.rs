//! The message format: one etcd revision's events under the mirrored prefix.
//!
//! Every sidecar of the sending cluster turns revision *r* of its own member's history into
//! exactly the same bytes (nothing sidecar-local goes in: no time, no member id), so the
//! replicas of the sending RSM submit identical messages, as C3B requires.
//!
//! ```text
//! version   u8        1
//! revision  u64 LE    the source revision
//! count     u32 LE    number of events
//! count × { kind u8 (0 put, 1 delete) · key_len u32 LE · key · [put only: value_len u32 LE · value] }
//! ```
//!
//! Decoding checks every length against the bytes left (a count or length cannot make it
//! allocate more than the message holds), rejects unknown versions and kinds, empty keys and
//! trailing bytes, and never panics: bad bytes are a [`DecodeError`].

use thiserror::Error;

/// The version byte this build writes and reads.
pub const VERSION: u8 = 1;

/// Bytes of the fixed header: version, revision, count.
const HEADER: usize = 1 + 8 + 4;
/// The smallest encoded event: a kind and a key length (bounds the events a count may
/// announce, hence what decoding allocates).
const MIN_EVENT: usize = 1 + 4;

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was created or overwritten.
    Put,
    /// The key was deleted.
    Delete,
}

/// One key's change in a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key (never empty: etcd has no empty keys).
    pub key: Vec<u8>,
    /// The new value (empty for a delete).
    pub value: Vec<u8>,
}

impl KvEvent {
    /// A put of `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self { kind: EventKind::Put, key: key.into(), value: value.into() }
    }

    /// A delete of `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Self { kind: EventKind::Delete, key: key.into(), value: Vec::new() }
    }
}

/// One revision of the source cluster: the message a sidecar submits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionMessage {
    /// The source cluster's revision.
    pub revision: u64,
    /// Its events under the mirrored prefix, in the order etcd reported them.
    pub events: Vec<KvEvent>,
}

/// Why bytes are not a message of this format.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the fixed header.
    #[error("message of {len} bytes is shorter than the {HEADER}-byte header")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// A version this build does not read.
    #[error("message version {0} (this build reads version {VERSION})")]
    Version(u8),
    /// More events announced than the bytes could hold.
    #[error("{count} events announced but only {left} bytes follow")]
    Count {
        /// Events announced.
        count: u32,
        /// Bytes after the header.
        left: usize,
    },
    /// An event's field runs past the end.
    #[error("event {index}: {field} runs past the end of the message")]
    Truncated {
        /// Event index.
        index: u32,
        /// Which field.
        field: &'static str,
    },
    /// An event kind other than put (0) or delete (1).
    #[error("event {index}: unknown kind {kind}")]
    Kind {
        /// Event index.
        index: u32,
        /// The byte found.
        kind: u8,
    },
    /// An empty key.
    #[error("event {index}: empty key")]
    EmptyKey {
        /// Event index.
        index: u32,
    },
    /// Bytes after the last event.
    #[error("{0} bytes after the last event")]
    Trailing(usize),
}

/// Why a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A key or value longer than 4 GiB − 1 (etcd's own limits are far lower).
    #[error("event {index}: a key or value of {len} bytes does not fit a u32 length")]
    TooLong {
        /// Event index.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// An empty key.
    #[error("event {index}: empty key")]
    EmptyKey {
        /// Event index.
        index: usize,
    },
}

impl RevisionMessage {
    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER
            + self
                .events
                .iter()
                .map(|e| 1 + 4 + e.key.len() + if e.kind == EventKind::Put { 4 + e.value.len() } else { 0 })
                .sum::<usize>()
    }

    /// The message's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let len32 = |index: usize, len: usize| u32::try_from(len).map_err(|_| EncodeError::TooLong { index, len });
        let count = len32(usize::MAX, self.events.len())?;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(VERSION);
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for (index, e) in self.events.iter().enumerate() {
            if e.key.is_empty() {
                return Err(EncodeError::EmptyKey { index });
            }
            out.push(match e.kind {
                EventKind::Put => 0,
                EventKind::Delete => 1,
            });
            out.extend_from_slice(&len32(index, e.key.len())?.to_le_bytes());
            out.extend_from_slice(&e.key);
            if e.kind == EventKind::Put {
                out.extend_from_slice(&len32(index, e.value.len())?.to_le_bytes());
                out.extend_from_slice(&e.value);
            }
        }
        Ok(out)
    }

    /// Parses a message; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER {
            return Err(DecodeError::TooShort { len: bytes.len() });
        }
        if bytes[0] != VERSION {
            return Err(DecodeError::Version(bytes[0]));
        }
        let mut r = Reader { bytes, at: 1 };
        let revision = r.u64().ok_or(DecodeError::TooShort { len: bytes.len() })?;
        let count = r.u32().ok_or(DecodeError::TooShort { len: bytes.len() })?;
        let left = bytes.len() - HEADER;
        if (count as usize).saturating_mul(MIN_EVENT) > left {
            return Err(DecodeError::Count { count, left });
        }
        let mut events = Vec::with_capacity(count as usize);
        for index in 0..count {
            let kind = match r.u8().ok_or(DecodeError::Truncated { index, field: "kind" })? {
                0 => EventKind::Put,
                1 => EventKind::Delete,
                kind => return Err(DecodeError::Kind { index, kind }),
            };
            let key = r.chunk().ok_or(DecodeError::Truncated { index, field: "key" })?;
            if key.is_empty() {
                return Err(DecodeError::EmptyKey { index });
            }
            let value = match kind {
                EventKind::Put => r.chunk().ok_or(DecodeError::Truncated { index, field: "value" })?.to_vec(),
                EventKind::Delete => Vec::new(),
            };
            events.push(KvEvent { kind, key: key.to_vec(), value });
        }
        if r.at != bytes.len() {
            return Err(DecodeError::Trailing(bytes.len() - r.at));
        }
        Ok(Self { revision, events })
    }
}

/// A bounds-checked cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }

    /// A u32 length, then that many bytes.
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> RevisionMessage {
        RevisionMessage {
            revision: 42,
            events: vec![KvEvent::put("/app/a", "1"), KvEvent::delete("/app/b"), KvEvent::put("/app/c", "")],
        }
    }

    #[test]
    fn round_trip_and_length() {
        let m = sample();
        let bytes = m.encode().unwrap();
        assert_eq!(bytes.len(), m.encoded_len());
        assert_eq!(RevisionMessage::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn empty_message_round_trips() {
        let m = RevisionMessage { revision: 7, events: vec![] };
        assert_eq!(RevisionMessage::decode(&m.encode().unwrap()).unwrap(), m);
    }

    #[test]
    fn typed_errors() {
        let good = sample().encode().unwrap();
        assert_eq!(RevisionMessage::decode(&[]), Err(DecodeError::TooShort { len: 0 }));
        assert_eq!(RevisionMessage::decode(&good[..5]), Err(DecodeError::TooShort { len: 5 }));
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(RevisionMessage::decode(&v), Err(DecodeError::Version(9)));
        let mut v = good.clone();
        v[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(RevisionMessage::decode(&v), Err(DecodeError::Count { count: u32::MAX, .. })));
        let mut v = good.clone();
        v[HEADER] = 7;
        assert_eq!(RevisionMessage::decode(&v), Err(DecodeError::Kind { index: 0, kind: 7 }));
        let mut v = good.clone();
        v.push(0);
        assert_eq!(RevisionMessage::decode(&v), Err(DecodeError::Trailing(1)));
        assert!(matches!(
            RevisionMessage::decode(&good[..good.len() - 1]),
            Err(DecodeError::Truncated { index: 2, field: "value" })
        ));
        // A key length pointing far past the end.
        let mut v = good.clone();
        v[HEADER + 1..HEADER + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(RevisionMessage::decode(&v), Err(DecodeError::Truncated { index: 0, field: "key" })));
        // An empty key.
        let mut v = vec![VERSION];
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.push(1);
        v.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(RevisionMessage::decode(&v), Err(DecodeError::EmptyKey { index: 0 }));
        assert_eq!(
            RevisionMessage { revision: 1, events: vec![KvEvent::put("", "x")] }.encode(),
            Err(EncodeError::EmptyKey { index: 0 })
        );
    }

    fn event() -> impl Strategy<Value = KvEvent> {
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 1..40), proptest::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(put, key, value)| if put { KvEvent::put(key, value) } else { KvEvent::delete(key) })
    }

    proptest! {
        #[test]
        fn proptest_round_trip(revision in any::<u64>(), events in proptest::collection::vec(event(), 0..20)) {
            let m = RevisionMessage { revision, events };
            let bytes = m.encode().unwrap();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            prop_assert_eq!(RevisionMessage::decode(&bytes).unwrap(), m);
        }

        /// Any bytes: a message or a typed error, never a panic; whatever decodes re-encodes
        /// to the same bytes (the encoding is canonical).
        #[test]
        fn proptest_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = RevisionMessage::decode(&bytes) {
                prop_assert_eq!(m.encode().unwrap(), bytes);
            }
        }

        /// Corrupting one byte or cutting the message never panics; a decode that still
        /// succeeds is a different, well-formed message.
        #[test]
        fn proptest_mutations(events in proptest::collection::vec(event(), 1..8), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let m = RevisionMessage { revision: 5, events };
            let good = m.encode().unwrap();
            let mut v = good.clone();
            let i = at % v.len();
            v[i] = byte;
            if let Ok(d) = RevisionMessage::decode(&v) {
                prop_assert_eq!(d.encode().unwrap(), v);
            }
            let c = cut % good.len();
            prop_assert!(RevisionMessage::decode(&good[..c]).is_err());
        }
    }
}
