//! The two stream framers (the TCP transport's `FrameReader`, the io_uring transport's
//! assembler) on arbitrary bytes in arbitrary splits: never a panic, never a frame above the
//! limit, and when both accept the whole stream they cut the same frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picsou_runtime::transport::framer::FrameReader;

const MAX_FRAME: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let step = usize::from(split % 64) + 1;
    let chunks: Vec<&[u8]> = stream.chunks(step).collect();

    let mut reader = FrameReader::new(MAX_FRAME);
    let mut by_reader = Vec::new();
    let mut reader_ok = true;
    'feed: for chunk in &chunks {
        reader.extend(chunk);
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() <= MAX_FRAME);
                    by_reader.push(f);
                }
                Ok(None) => break,
                Err(_) => {
                    reader_ok = false;
                    break 'feed;
                }
            }
        }
    }

    let (by_assembler, assembler) = picsou_transport_uring::assemble_for_fuzzing(&chunks, MAX_FRAME);
    assert!(by_assembler.iter().all(|f| f.len() <= MAX_FRAME));
    if reader_ok && assembler.is_ok() {
        assert_eq!(by_reader, by_assembler, "the framers disagree");
    }
});
