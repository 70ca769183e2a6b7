//! The RDMA transport's bootstrap messages (the queue pair and ring info exchanged over TCP
//! before any RDMA write): the info decoder on arbitrary bytes, and the dial and its answer
//! with arbitrary content. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picsou_transport_rdma::wire::{ACCEPT_LEN, DIAL_LEN, INFO_LEN, Info, decode_accept, decode_dial};

const KEY: [u8; 32] = [3; 32];

fuzz_target!(|data: &[u8]| {
    let _ = Info::decode(data);
    if let Some(info) = data.first_chunk::<INFO_LEN>() {
        if let Ok(i) = Info::decode(info) {
            // What decodes encodes back to something that decodes the same.
            assert_eq!(Info::decode(&i.encode()).ok(), Some(i));
        }
    }
    if let Some(dial) = data.first_chunk::<DIAL_LEN>() {
        let _ = decode_dial(dial, &KEY);
        if let Some(answer) = data[DIAL_LEN..].first_chunk::<ACCEPT_LEN>() {
            let _ = decode_accept(dial, answer, &KEY);
        }
    }
});
