//! An accepted connection whose hello verified (see [`crate::transport::accept`]): it carries
//! frames from one authenticated peer.
//!
//! Frames are read in budgeted rounds so that one fast peer cannot starve the others within
//! one poll.

use std::io;
use std::os::fd::AsFd;

use mio::net::TcpStream;
use picsou_core::ReplicaId;
use picsou_core::bufpool::BufPool;

use crate::transport::framer::{FrameReader, FramingError};
use crate::transport::{TransportEvent, TransportStats};

/// An authenticated incoming connection.
#[derive(Debug)]
pub(super) struct Incoming {
    stream: TcpStream,
    /// The same socket as a std stream (a duplicated descriptor), which reads into
    /// uninitialised memory (see `FrameReader::read_from`); `None` if duplicating failed.
    reader_stream: Option<std::net::TcpStream>,
    source: String,
    peer: ReplicaId,
    /// Splits the stream.
    reader: FrameReader,
    /// The connection is on the transport's ready list (it may have unread bytes).
    pub(super) listed: bool,
}

/// The result of [`Incoming::read_frames`].
#[derive(Debug)]
pub(super) enum FramesProgress {
    /// Everything available was read.
    Drained,
    /// The budget ran out with bytes possibly left: serve the connection again.
    Budget,
    /// The peer closed the connection.
    Closed,
    /// The socket failed.
    Failed(io::Error),
    /// The peer broke the framing rules.
    Bad(FramingError),
}

impl Incoming {
    /// A connection from `source` whose hello proved it is `peer`: frames follow, none larger
    /// than `max_frame`; large ones are read into buffers recycled through `pool`.
    pub(super) fn new(stream: TcpStream, source: String, peer: ReplicaId, max_frame: usize, pool: BufPool) -> Self {
        let reader_stream = stream.as_fd().try_clone_to_owned().ok().map(std::net::TcpStream::from);
        Self { stream, reader_stream, source, peer, reader: FrameReader::with_pool(max_frame, pool), listed: false }
    }

    /// The remote address.
    pub(super) fn source(&self) -> &str {
        &self.source
    }

    /// The authenticated peer.
    pub(super) fn peer(&self) -> ReplicaId {
        self.peer
    }

    /// The socket (to deregister it).
    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads up to about `budget` bytes, appending every complete frame to `events`.
    pub(super) fn read_frames(
        &mut self,
        budget: usize,
        events: &mut Vec<TransportEvent>,
        stats: &mut TransportStats,
    ) -> FramesProgress {
        let mut left = budget;
        loop {
            let read = match &mut self.reader_stream {
                Some(s) => self.reader.read_from(s),
                None => self.reader.read_from(&mut self.stream),
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
                match self.reader.next_frame() {
                    Ok(Some(frame)) => {
                        stats.frames_received += 1;
                        stats.bytes_received += frame.len() as u64;
                        events.push(TransportEvent::Frame { from: self.peer, frame });
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
