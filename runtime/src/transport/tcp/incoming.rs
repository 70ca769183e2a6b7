//! An accepted connection: first a hello that says (and proves) who dialled, then frames.
//!
//! This module only moves bytes; deciding whether a hello is acceptable (keys, nonces, which
//! connection of a peer wins) is the transport's job, since it needs state shared by all
//! connections.
//!
//! The hello is read exactly (40 bytes, never more), so a connection whose frames must wait
//! (the node stopped receiving) leaves them in the kernel buffer, where TCP flow control pushes
//! back on the sender. Frames are read in budgeted rounds so that one fast peer cannot starve
//! the others within one poll.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use picsou_core::ReplicaId;
use picsou_core::bufpool::BufPool;

use crate::transport::framer::{FrameReader, FramingError};
use crate::transport::hello::{self, HELLO_LEN, HelloError};
use crate::transport::{TransportEvent, TransportStats};

/// How long a connection may take to send its hello before it is dropped: a slot held by a
/// client that says nothing is a (small) denial of service.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// An accepted connection.
#[derive(Debug)]
pub(super) struct Incoming {
    stream: TcpStream,
    /// The same socket as a std stream (a duplicated descriptor), which reads into
    /// uninitialised memory (see `FrameReader::read_from`); `None` if duplicating failed.
    reader_stream: Option<std::net::TcpStream>,
    source: SocketAddr,
    phase: Phase,
    /// The connection is on the transport's ready list (it may have unread bytes).
    pub(super) listed: bool,
}

/// What the connection is waiting for.
#[derive(Debug)]
enum Phase {
    /// The hello, by `deadline`.
    Hello {
        /// The bytes so far.
        buf: [u8; HELLO_LEN],
        /// How many of `buf` arrived.
        got: usize,
        /// Drop the connection then.
        deadline: Instant,
    },
    /// Frames from an authenticated peer.
    Frames {
        /// Who proved to be on the other end.
        peer: ReplicaId,
        /// Splits the stream.
        reader: FrameReader,
    },
}

/// The result of [`Incoming::read_hello`].
#[derive(Debug)]
pub(super) enum HelloProgress {
    /// More bytes are needed; wait for readiness.
    Pending,
    /// The whole hello arrived: verify it.
    Complete([u8; HELLO_LEN]),
    /// The first bytes are not a hello.
    Garbage(String),
    /// The remote closed before completing a hello; `partial` if it sent some bytes.
    Closed {
        /// Some bytes came first.
        partial: bool,
    },
    /// The socket failed.
    Failed(io::Error),
}

/// The result of [`Incoming::read_frames`].
#[derive(Debug)]
pub(super) enum FramesProgress {
    /// Read until the socket had nothing more.
    Drained,
    /// The budget is spent and more bytes may be waiting: read again later (edge-triggered
    /// readiness will not say so again).
    Budget,
    /// The peer closed the connection.
    Closed,
    /// The socket failed.
    Failed(io::Error),
    /// The stream broke the framing rules.
    Bad(FramingError),
}

impl Incoming {
    /// A connection just accepted from `source`.
    pub(super) fn new(stream: TcpStream, source: SocketAddr, now: Instant) -> Self {
        let reader_stream = stream.as_fd().try_clone_to_owned().ok().map(std::net::TcpStream::from);
        Self {
            stream,
            reader_stream,
            source,
            phase: Phase::Hello { buf: [0; HELLO_LEN], got: 0, deadline: now + HELLO_TIMEOUT },
            listed: false,
        }
    }

    /// The remote address.
    pub(super) fn source(&self) -> SocketAddr {
        self.source
    }

    /// The authenticated peer, once the hello was accepted.
    pub(super) fn peer(&self) -> Option<ReplicaId> {
        match self.phase {
            Phase::Frames { peer, .. } => Some(peer),
            Phase::Hello { .. } => None,
        }
    }

    /// When the hello must have arrived, while it has not.
    pub(super) fn hello_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Hello { deadline, .. } => Some(deadline),
            Phase::Frames { .. } => None,
        }
    }

    /// The socket (to deregister it).
    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads the hello, never past its end.
    pub(super) fn read_hello(&mut self) -> HelloProgress {
        let Phase::Hello { buf, got, .. } = &mut self.phase else { return HelloProgress::Pending };
        loop {
            if *got == HELLO_LEN {
                return HelloProgress::Complete(*buf);
            }
            match self.stream.read(&mut buf[*got..]) {
                Ok(0) => return HelloProgress::Closed { partial: *got > 0 },
                Ok(n) => {
                    *got += n;
                    if !hello::plausible_prefix(&buf[..*got]) {
                        return HelloProgress::Garbage(HelloError::BadMagic.to_string());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HelloProgress::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return HelloProgress::Failed(e),
            }
        }
    }

    /// The hello was accepted: frames from `peer` follow, none larger than `max_frame`; large
    /// ones are read into buffers recycled through `pool`.
    pub(super) fn authenticated(&mut self, peer: ReplicaId, max_frame: usize, pool: BufPool) {
        self.phase = Phase::Frames { peer, reader: FrameReader::with_pool(max_frame, pool) };
    }

    /// Reads up to about `budget` bytes, appending every complete frame to `events`.
    pub(super) fn read_frames(
        &mut self,
        budget: usize,
        events: &mut Vec<TransportEvent>,
        stats: &mut TransportStats,
    ) -> FramesProgress {
        let Phase::Frames { peer, reader } = &mut self.phase else { return FramesProgress::Drained };
        let mut left = budget;
        loop {
            let read = match &mut self.reader_stream {
                Some(s) => reader.read_from(s),
                None => reader.read_from(&mut self.stream),
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return FramesProgress::Drained,
                    io::ErrorKind::Interrupted => continue,
                    _ => return FramesProgress::Failed(e),
                },
            };
            if n == 0 {
                return FramesProgress::Closed;
            }
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => {
                        stats.frames_received += 1;
                        stats.bytes_received += frame.len() as u64;
                        events.push(TransportEvent::Frame { from: *peer, frame });
                    }
                    Ok(None) => break,
                    Err(e) => return FramesProgress::Bad(e),
                }
            }
            left = left.saturating_sub(n);
            if left == 0 {
                return FramesProgress::Budget;
            }
        }
    }
}
