//! Frames a verdict sends beyond the one it rewrote in place: the outer
//! fragments of a tunnelled packet too big for the MTU without DF (the
//! kernel fragments the outer packet). The engine keeps them here, in
//! memory reserved once, until the datapath takes them
//! ([`crate::Engine::next_extra_frame`]) right after the verdict.

/// Room for the extra frames of one verdict: a 65,535-byte packet cut for a
/// 576-byte MTU is 117 fragments of at most 590 bytes of frame.
const BYTES: usize = 72 * 1024;
/// Most extra frames one verdict can leave.
const FRAMES: usize = 128;

/// The pending extra frames of the last verdict.
pub(crate) struct ExtraFrames {
    buf: Vec<u8>,
    used: usize,
    /// (start, len) in `buf`.
    frames: Vec<(usize, usize)>,
    next: usize,
}

impl ExtraFrames {
    pub(crate) fn new() -> Self {
        ExtraFrames {
            buf: vec![0; BYTES],
            used: 0,
            frames: Vec::with_capacity(FRAMES),
            next: 0,
        }
    }

    /// Forgets what the previous verdict left.
    pub(crate) fn clear(&mut self) {
        self.used = 0;
        self.frames.clear();
        self.next = 0;
    }

    /// Room for a frame of `len` bytes: the slice to fill, or `None` when
    /// the reserve is spent (the caller drops the packet).
    pub(crate) fn push(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.frames.len() == FRAMES || self.used + len > BYTES {
            return None;
        }
        let start = self.used;
        self.used += len;
        self.frames.push((start, len));
        Some(&mut self.buf[start..start + len])
    }

    /// Frames the last verdict left, taken or not.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether a frame waits.
    pub(crate) fn pending(&self) -> bool {
        self.next < self.frames.len()
    }

    /// Copies the next frame into `out`; its length, or `None` when none is
    /// left. A frame longer than `out` is skipped (and `None` returned for
    /// it: the caller counts it as not sent).
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> Option<usize> {
        let &(start, len) = self.frames.get(self.next)?;
        self.next += 1;
        let dst = out.get_mut(..len)?;
        dst.copy_from_slice(&self.buf[start..start + len]);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_and_the_reserve_is_bounded() {
        let mut x = ExtraFrames::new();
        x.push(3).unwrap().copy_from_slice(b"abc");
        x.push(2).unwrap().copy_from_slice(b"de");
        let mut out = [0u8; 8];
        assert!(x.pending());
        assert_eq!(x.pop_into(&mut out), Some(3));
        assert_eq!(&out[..3], b"abc");
        assert_eq!(x.pop_into(&mut out[..1]), None, "too long for the buffer");
        assert!(!x.pending());
        x.clear();
        assert!(x.push(BYTES + 1).is_none());
        for _ in 0..FRAMES {
            assert!(x.push(1).is_some());
        }
        assert!(x.push(1).is_none(), "at most FRAMES frames");
    }
}
