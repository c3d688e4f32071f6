//! Frame decoding and reassembly from arbitrary chunks: every decoded frame is exactly a
//! length-prefixed piece of the input, nothing over the limit is ever buffered or returned,
//! and decoding does not depend on how the stream was cut.

#![no_main]
#![forbid(unsafe_code)]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use overlay_core::wire::{FrameDecoder, WireError, encode_frame};

#[derive(Arbitrary, Debug)]
struct Input {
    max: u16,
    cuts: Vec<u16>,
    stream: Vec<u8>,
}

/// Decodes `stream` delivered in the given chunks; returns frames and the first error.
fn decode(max: usize, stream: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Option<WireError>) {
    let mut dec = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let end = cut.clamp(at, stream.len());
        dec.push(&stream[at..end]);
        at = end;
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() <= max);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
            assert!(dec.buffered() <= stream.len());
        }
    }
    (frames, None)
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max);
    let mut cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c)).collect();
    cuts.sort_unstable();
    let (frames, err) = decode(max, &input.stream, &cuts);
    let (whole, whole_err) = decode(max, &input.stream, &[]);
    assert_eq!(frames, whole, "chunking changed the frames");
    assert_eq!(err, whole_err);
    // The frames re-encode to a prefix of the stream.
    let encoded: Vec<u8> = frames.iter().flat_map(|f| encode_frame(f)).collect();
    assert_eq!(&input.stream[..encoded.len()], &encoded[..]);
    if let Some(WireError::FrameTooLarge { len, max: m }) = err {
        assert!(len > m && m == max);
    }
});
