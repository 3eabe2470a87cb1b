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

    /// Sets the frame's length to `len`, trimming it or extending it into
    /// the tailroom (to build a frame from scratch); false (and unchanged)
    /// if it does not fit.
    pub fn set_len(&mut self, len: usize) -> bool {
        match self.start.checked_add(len) {
            Some(end) if end <= self.buf.len() => {
                self.end = end;
                true
            }
            _ => false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_grows_into_headroom_and_tailroom_but_never_past_the_buffer() {
        let mut buf = vec![0u8; 4096];
        {
            let mut f = PacketBuf::new(&mut buf, 256, 100).unwrap();
            assert_eq!((f.headroom(), f.tailroom()), (256, 4096 - 356));
            assert!(f.push_front(20));
            assert_eq!((f.start(), f.len()), (236, 120));
            f.data_mut()[0] = 0xab;
            assert!(!f.push_front(237), "cannot grow past the buffer's start");
            assert!(f.truncate(60));
            assert!(!f.truncate(61), "truncate only shrinks");
            assert!(f.set_len(4096 - 236));
            assert!(!f.set_len(4096 - 235), "cannot grow past the buffer's end");
            assert_eq!(f.tailroom(), 0);
        }
        assert_eq!(buf[236], 0xab);
        assert!(PacketBuf::new(&mut buf, 4000, 97).is_none());
    }
}
