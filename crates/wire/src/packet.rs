//! A frame inside a larger buffer, with room in front of it: the one frame
//! type the engine rewrites and the datapath sends.
//!
//! TUN forwarding prepends a header and ICMP replies grow the frame, so the
//! engine needs to move the frame's start backwards without copying the
//! payload. AF_XDP frames live in 4 KiB UMEM chunks with configurable
//! headroom; this type is the safe view of one such chunk.

/// A mutable frame `buf[start..end]` with `start` bytes of headroom and
/// `buf.len() - end` bytes of tailroom.
#[derive(Debug)]
pub struct PacketBuf<'a> {
    buf: &'a mut [u8],
    start: usize,
    end: usize,
}

impl<'a> PacketBuf<'a> {
    /// Wraps the frame `buf[start..start + len]`; `None` if it does not fit.
    pub fn new(buf: &'a mut [u8], start: usize, len: usize) -> Option<Self> {
        let end = start.checked_add(len)?;
        (end <= buf.len()).then_some(PacketBuf { buf, start, end })
    }

    /// Wraps a whole buffer as the frame, with no headroom.
    pub fn whole(buf: &'a mut [u8]) -> Self {
        let end = buf.len();
        PacketBuf { buf, start: 0, end }
    }

    /// Offset of the frame in the buffer (changes when the frame grows forward).
    pub fn start(&self) -> usize {
        self.start
    }

    /// Frame length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for a zero-length frame.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Bytes available in front of the frame.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes available after the frame.
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    /// The frame.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The frame, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Grows the frame by `n` bytes at the front; false (and unchanged) if
    /// the headroom is too small.
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }

    /// Shrinks the frame to `len` bytes; false (and unchanged) if longer.
    pub fn truncate(&mut self, len: usize) -> bool {
        if len > self.len() {
            return false;
        }
        self.end = self.start + len;
        true
    }
}
