//! Length-prefixed frames: encoding one, and reassembling them from arbitrary chunks
//! with a bounded buffer.

use super::*;

/// Buffer capacity a [`FrameDecoder`] keeps once it has handed out the frames it held
/// (beyond it, a buffer grown by a burst is released or shrunk): a rumor's frame (about
/// 1.3 KB) and the small ones fit, and a thousand links do not hold megabytes idle.
pub const RETAINED_CAPACITY: usize = 4 * 1024;

/// Reassembles frames from arbitrary chunks. Holds at most one partial frame plus what the
/// last chunk carried; rejects a length prefix over `max_body` before buffering the body.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
}

impl FrameDecoder {
    /// A decoder for bodies of at most `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_body,
        }
    }

    /// Changes the largest body accepted from now on; buffered bytes are kept.
    pub fn set_max(&mut self, max_body: usize) {
        self.max_body = max_body;
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Gives back what a burst of large frames grew the buffer to, instead of keeping it
    /// for the life of the link: all of it once empty, down to [`RETAINED_CAPACITY`] once
    /// it holds less.
    fn release_burst(&mut self) {
        if self.buf.capacity() <= RETAINED_CAPACITY {
            return;
        }
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else if self.buf.len() <= RETAINED_CAPACITY {
            self.buf.shrink_to(RETAINED_CAPACITY);
        }
    }

    /// Bytes held but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(header) = pending.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > self.max_body {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_body,
            });
        }
        let Some(body) = pending.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.start += FRAME_HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.start == 0 {
            self.release_burst();
        }
        Ok(Some(body))
    }
}

/// Frames `body`: 4-byte big-endian length, then the body.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reassemble_from_any_chunking() {
        let bodies: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![], vec![7; 300], b"last".to_vec()];
        let stream: Vec<u8> = bodies.iter().flat_map(|b| encode_frame(b)).collect();
        for chunk in 1..stream.len() {
            let mut dec = FrameDecoder::new(1000);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                dec.push(piece);
                while let Some(frame) = dec.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, bodies, "chunk size {chunk}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn a_burst_of_large_frames_does_not_pin_its_buffer() {
        let mut dec = FrameDecoder::new(1 << 20);
        let big = vec![7u8; 200_000];
        dec.push(&encode_frame(&big));
        assert_eq!(dec.next_frame().unwrap(), Some(big));
        assert_eq!(dec.buffered(), 0);
        assert!(
            dec.buf.capacity() <= RETAINED_CAPACITY,
            "{}",
            dec.buf.capacity()
        );
        // A small frame split over two pushes keeps its (small) buffer between them.
        let frame = encode_frame(b"0123456789");
        dec.push(&frame[..6]);
        dec.push(&frame[6..]);
        assert_eq!(dec.next_frame().unwrap(), Some(b"0123456789".to_vec()));
        assert_eq!(dec.buffered(), 0);
        // Nor when the reads keep ending inside a frame, so the buffer never drains.
        let mut bytes = encode_frame(&vec![7u8; 200_000]);
        bytes.extend_from_slice(&frame[..6]);
        dec.push(&bytes);
        assert_eq!(dec.next_frame().unwrap().map(|f| f.len()), Some(200_000));
        assert!(
            dec.buf.capacity() <= RETAINED_CAPACITY,
            "{}",
            dec.buf.capacity()
        );
        dec.push(&frame[6..]);
        assert_eq!(dec.next_frame().unwrap(), Some(b"0123456789".to_vec()));
    }

    #[test]
    fn oversized_prefix_is_refused_before_buffering() {
        let mut dec = FrameDecoder::new(16);
        dec.push(&17u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(WireError::FrameTooLarge { len: 17, max: 16 })
        );
    }
}
