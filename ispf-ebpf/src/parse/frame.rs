//! Bounds-checked access to a frame's bytes: the one way the parser reads
//! a packet, whether XDP or TC memory in the kernel or a byte slice on the
//! host.

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Bounds-checked access to a frame's bytes.
pub trait Frame {
    /// Length of the frame in bytes.
    fn size(&self) -> usize;
    /// `N` bytes at `off`, or malformed if the frame is shorter.
    fn bytes<const N: usize>(&self, off: usize) -> Result<&[u8; N], Malformed>;
    /// An outer 802.1Q tag the kernel already took out of the frame (TC
    /// sees tags of received frames as skb metadata): `OUTER_TAG | TCI`,
    /// or 0 when the frame carries all its tags in-band.
    #[inline(always)]
    fn outer_tag(&self) -> u32 {
        0
    }
    /// Copies up to `dst.len()` bytes from `off` into `dst` (as far as the
    /// frame goes); returns how many. Entry points override it with their
    /// load-bytes helper: a loop of packet reads does not verify.
    #[inline(always)]
    fn copy_out(&self, off: usize, dst: &mut [u8; ispf_common::FINGERPRINT_BYTES]) -> usize {
        let mut n = 0;
        while n < dst.len() {
            match self.bytes::<1>(off + n) {
                Ok(b) => dst[n] = b[0],
                Err(_) => break,
            }
            n += 1;
        }
        n
    }
}

/// [`Frame::outer_tag`]: a tag is present.
pub const OUTER_TAG: u32 = 1 << 16;

/// A frame in a byte slice (host tests, tools).
pub struct SliceFrame<'a>(pub &'a [u8]);

impl Frame for SliceFrame<'_> {
    fn size(&self) -> usize {
        self.0.len()
    }
    fn bytes<const N: usize>(&self, off: usize) -> Result<&[u8; N], Malformed> {
        if off > MAX_OFF {
            return Err(Malformed);
        }
        self.0
            .get(off..off + N)
            .and_then(|s| s.try_into().ok())
            .ok_or(Malformed)
    }
}

/// Largest offset we ever read at; keeps offsets provably bounded for the
/// verifier (frames are at most a page).
pub const MAX_OFF: usize = 4096;
