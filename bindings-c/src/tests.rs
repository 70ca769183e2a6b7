//! Rust-side tests of the FFI layer, calling the exports as C would. The C tests
//! (`tests/c/`, `make test`) cover the same ground from C, under valgrind and ASan.

use std::ffi::{CStr, CString, c_void};
use std::ptr::{null, null_mut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::picsou_replica;
use crate::endpoint::*;
use crate::error::picsou_result::{self, *};
use crate::node::*;

/// A deployment of two CFT RSMs of `n` replicas each on loopback ports `base..`.
fn deployment(n: u16, f: u16, base: u16, kind: &str) -> CString {
    let rsm = |name: &str, first: u16| {
        let replicas: Vec<String> =
            (0..n).map(|i| format!("{{ id = {i}, address = \"127.0.0.1:{}\" }}", first + i)).collect();
        format!("[[rsm]]\nname = \"{name}\"\nfault = \"cft\"\nf = {f}\nreplicas = [{}]\n", replicas.join(", "))
    };
    let text = format!(
        "{}{}[transport]\nkind = \"{kind}\"\n[keys]\nsecret = \"{}\"\n",
        rsm("alpha", base),
        rsm("beta", base + 100),
        "ab".repeat(32)
    );
    CString::new(text).unwrap()
}

fn last_error() -> String {
    // SAFETY: a NUL-terminated thread-local string, read at once.
    unsafe { CStr::from_ptr(crate::error::picsou_last_error_message()) }.to_string_lossy().into_owned()
}

fn new_endpoint(config: &CStr, rsm: &CStr, replica: u16) -> Result<*mut picsou_endpoint, picsou_result> {
    let mut ep = null_mut();
    // SAFETY: valid strings and output.
    match unsafe { picsou_endpoint_new(config.as_ptr(), rsm.as_ptr(), replica, 1, &mut ep) } {
        PICSOU_OK => Ok(ep),
        e => Err(e),
    }
}

fn message(rsm: u8, seq: u64) -> Vec<u8> {
    format!("rsm {rsm} message {seq}").into_bytes()
}

#[test]
fn endpoints_exchange_both_streams_in_memory() {
    let config = deployment(2, 0, 21000, "tcp");
    let mut eps = Vec::new();
    for (rsm, name) in [(0u8, c"alpha"), (1, c"1")] {
        for i in 0..2 {
            eps.push((picsou_replica { rsm, index: i }, new_endpoint(&config, name, i).unwrap()));
        }
    }
    const N: u64 = 200;
    for &(r, ep) in &eps {
        for seq in 0..N {
            let m = message(r.rsm, seq);
            // SAFETY: live handle, valid slices.
            let res = unsafe { picsou_endpoint_submit(ep, 1, seq, m.as_ptr(), m.len(), null(), 0) };
            assert_eq!(res, PICSOU_OK, "{}", last_error());
        }
    }
    let mut delivered = vec![0u64; eps.len()];
    let mut now = 1u64;
    let mut frame = vec![0u8; 1 << 20];
    let mut buf = vec![0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.iter().any(|&d| d < N) {
        assert!(Instant::now() < deadline, "no progress: delivered {delivered:?}");
        now += 100_000;
        for k in 0..eps.len() {
            let ep = eps[k].1;
            // SAFETY: live handle.
            assert_eq!(unsafe { picsou_endpoint_handle_timeout(ep, now) }, PICSOU_OK);
            loop {
                let (mut to, mut len) = (picsou_replica::default(), 0usize);
                // SAFETY: live handle, buffer of frame.len() bytes, valid outputs.
                let r = unsafe {
                    picsou_endpoint_poll_transmit(ep, now, frame.as_mut_ptr(), frame.len(), &mut to, &mut len)
                };
                if r == PICSOU_EMPTY {
                    break;
                }
                assert_eq!(r, PICSOU_OK, "{}", last_error());
                let dst = eps.iter().find(|(id, _)| *id == to).expect("frame to a known replica").1;
                // SAFETY: live handle, `len` bytes of frame.
                let r = unsafe { picsou_endpoint_handle_frame(dst, now, eps[k].0, frame.as_ptr(), len) };
                assert_eq!(r, PICSOU_OK);
            }
        }
        for (k, &(id, ep)) in eps.iter().enumerate() {
            loop {
                let mut ev = picsou_event::default();
                let mut len = 0usize;
                // SAFETY: live handle, valid buffer and outputs.
                let r = unsafe { picsou_endpoint_poll_event(ep, buf.as_mut_ptr(), buf.len(), &mut ev, &mut len) };
                if r == PICSOU_EMPTY {
                    break;
                }
                assert_eq!(r, PICSOU_OK, "{}", last_error());
                assert_ne!(ev.kind, picsou_event_kind::PICSOU_EVENT_PEER_MISBEHAVED);
                if ev.kind == picsou_event_kind::PICSOU_EVENT_DELIVER {
                    assert_eq!(ev.seq, delivered[k], "in order");
                    assert_eq!(&buf[..ev.payload_len], &message(1 - id.rsm, ev.seq)[..]);
                    assert_eq!(len, ev.payload_len);
                    delivered[k] += 1;
                }
            }
        }
    }
    for &(_, ep) in &eps {
        let mut q = 0;
        // SAFETY: live handle, valid output.
        assert_eq!(unsafe { picsou_endpoint_received(ep, &mut q) }, PICSOU_OK);
        assert_eq!(q, N);
        // SAFETY: live handle, freed once.
        assert_eq!(unsafe { picsou_endpoint_free(ep) }, PICSOU_OK);
    }
}

#[test]
fn too_small_buffers_report_the_size_and_keep_the_item() {
    let config = deployment(1, 0, 21200, "tcp");
    let a = new_endpoint(&config, c"alpha", 0).unwrap();
    let b = new_endpoint(&config, c"beta", 0).unwrap();
    let payload = vec![7u8; 3000];
    // SAFETY: live handle, valid slice.
    assert_eq!(unsafe { picsou_endpoint_submit(a, 1, 0, payload.as_ptr(), payload.len(), null(), 0) }, PICSOU_OK);
    let (mut to, mut len) = (picsou_replica { rsm: 9, index: 9 }, 0usize);
    // SAFETY: NULL buffer with length 0 asks for the size.
    let r = unsafe { picsou_endpoint_poll_transmit(a, 2, null_mut(), 0, &mut to, &mut len) };
    assert_eq!(r, PICSOU_ERR_BUFFER_TOO_SMALL);
    assert!(len > payload.len(), "frame holds the payload: {len}");
    assert_eq!(to, picsou_replica { rsm: 9, index: 9 }, "outputs other than the size are untouched");
    assert!(last_error().contains(&format!("{len} are needed")), "{}", last_error());
    let needed = len;
    let mut frame = vec![0u8; needed];
    // SAFETY: buffer one byte short.
    let r = unsafe { picsou_endpoint_poll_transmit(a, 2, frame.as_mut_ptr(), needed - 1, &mut to, &mut len) };
    assert_eq!(r, PICSOU_ERR_BUFFER_TOO_SMALL);
    // SAFETY: exactly the size needed.
    let r = unsafe { picsou_endpoint_poll_transmit(a, 2, frame.as_mut_ptr(), needed, &mut to, &mut len) };
    assert_eq!(r, PICSOU_OK);
    assert_eq!((to, len), (picsou_replica { rsm: 1, index: 0 }, needed));
    let alpha0 = picsou_replica { rsm: 0, index: 0 };
    // SAFETY: live handle, `len` bytes.
    let r = unsafe { picsou_endpoint_handle_frame(b, 3, alpha0, frame.as_ptr(), len) };
    assert_eq!(r, PICSOU_OK);
    let mut ev = picsou_event::default();
    let mut small = [0u8; 10];
    // SAFETY: valid buffer of 10 bytes.
    let r = unsafe { picsou_endpoint_poll_event(b, small.as_mut_ptr(), small.len(), &mut ev, &mut len) };
    assert_eq!(r, PICSOU_ERR_BUFFER_TOO_SMALL);
    assert_eq!(len, payload.len());
    let mut big = vec![0u8; len];
    // SAFETY: valid buffer.
    let r = unsafe { picsou_endpoint_poll_event(b, big.as_mut_ptr(), big.len(), &mut ev, &mut len) };
    assert_eq!(r, PICSOU_OK);
    assert_eq!((ev.kind, ev.seq, ev.payload_len), (picsou_event_kind::PICSOU_EVENT_DELIVER, 0, payload.len()));
    assert_eq!(big, payload);
    // A garbage frame is an event, not an error.
    // SAFETY: valid slice.
    let r = unsafe { picsou_endpoint_handle_frame(b, 4, alpha0, b"junk".as_ptr(), 4) };
    assert_eq!(r, PICSOU_OK);
    // SAFETY: valid buffer.
    let r = unsafe { picsou_endpoint_poll_event(b, big.as_mut_ptr(), big.len(), &mut ev, &mut len) };
    assert_eq!(r, PICSOU_OK);
    assert_eq!(ev.kind, picsou_event_kind::PICSOU_EVENT_PEER_MISBEHAVED);
    assert_eq!(len, ev.payload_len + 1);
    assert!(std::str::from_utf8(&big[..ev.payload_len]).unwrap().contains("bad frame"));
    // SAFETY: live handles, freed once.
    unsafe {
        assert_eq!(picsou_endpoint_free(a), PICSOU_OK);
        assert_eq!(picsou_endpoint_free(b), PICSOU_OK);
        assert_eq!(picsou_endpoint_free(b), PICSOU_ERR_INVALID_HANDLE);
    }
}

#[test]
fn bad_input_gets_typed_errors() {
    let config = deployment(2, 0, 21300, "tcp");
    assert_eq!(new_endpoint(c"strategy = ", c"alpha", 0).unwrap_err(), PICSOU_ERR_CONFIG);
    assert!(last_error().starts_with("picsou_endpoint_new: <config_toml>:1:"), "{}", last_error());
    assert_eq!(new_endpoint(&config, c"gamma", 0).unwrap_err(), PICSOU_ERR_UNKNOWN_RSM);
    assert!(last_error().contains("no RSM named \"gamma\""), "{}", last_error());
    assert_eq!(new_endpoint(&config, c"beta", 2).unwrap_err(), PICSOU_ERR_UNKNOWN_REPLICA);
    assert!(last_error().contains("there is no replica 2"), "{}", last_error());
    assert_eq!(new_endpoint(c"name = \"\xff\"", c"alpha", 0).unwrap_err(), PICSOU_ERR_INVALID_UTF8);
    // SAFETY: NULL arguments are refused before use.
    unsafe {
        let mut ep = null_mut();
        assert_eq!(picsou_endpoint_new(null(), c"alpha".as_ptr(), 0, 0, &mut ep), PICSOU_ERR_NULL_ARGUMENT);
        assert!(ep.is_null(), "no output on failure");
        assert_eq!(picsou_endpoint_new(config.as_ptr(), c"alpha".as_ptr(), 0, 0, null_mut()), PICSOU_ERR_NULL_ARGUMENT);
        let mut x = 0u64;
        assert_eq!(picsou_endpoint_quacked(null(), &mut x), PICSOU_ERR_NULL_ARGUMENT);
        assert_eq!(picsou_node_quacked(null(), &mut x), PICSOU_ERR_NULL_ARGUMENT);
        assert_eq!(picsou_node_free(null_mut()), PICSOU_OK);
        assert_eq!(picsou_endpoint_free(null_mut()), PICSOU_OK);
        assert_eq!(picsou_delivery_free(null_mut()), PICSOU_OK);
    }
    let ep = new_endpoint(&config, c"alpha", 0).unwrap();
    // SAFETY: live handle; NULL data with a length, and a huge length, are refused before use.
    unsafe {
        assert_eq!(picsou_endpoint_submit(ep, 1, 0, null(), 5, null(), 0), PICSOU_ERR_NULL_ARGUMENT);
        assert_eq!(
            picsou_endpoint_submit(ep, 1, 0, b"x".as_ptr(), usize::MAX, null(), 0),
            PICSOU_ERR_PAYLOAD_TOO_LARGE
        );
        assert_eq!(picsou_endpoint_submit(ep, 1, 1, b"x".as_ptr(), 1, null(), 0), PICSOU_ERR_OUT_OF_ORDER);
        assert!(last_error().contains("expected seq 0, got 1"), "{}", last_error());
        assert_eq!(
            picsou_endpoint_handle_frame(ep, 1, picsou_replica::default(), b"x".as_ptr(), usize::MAX),
            PICSOU_ERR_INVALID_ARGUMENT
        );
        assert_eq!(picsou_endpoint_local_has(ep, 1, 0), PICSOU_ERR_INVALID_STATE);
        // A node handle function refuses an endpoint handle.
        let mut x = 0u64;
        assert_eq!(picsou_node_quacked(ep.cast(), &mut x), PICSOU_ERR_INVALID_HANDLE);
        assert_eq!(picsou_endpoint_free(ep), PICSOU_OK);
        assert_eq!(picsou_endpoint_quacked(ep, &mut x), PICSOU_ERR_INVALID_HANDLE);
    }
}

/// The endpoint functions of the previous release still work, as aliases of the new names.
#[test]
#[allow(deprecated)]
fn previous_names_are_aliases() {
    let config = deployment(1, 0, 21350, "mem");
    let ep = new_endpoint(&config, c"alpha", 0).unwrap();
    let mut x = 0u64;
    // SAFETY: live handle and writable outputs.
    unsafe {
        assert_eq!(picsou_endpoint_transmit(ep, 1, 0, b"x".as_ptr(), 1, null(), 0), PICSOU_OK);
        assert_eq!(picsou_endpoint_transmit(ep, 1, 5, b"x".as_ptr(), 1, null(), 0), PICSOU_ERR_OUT_OF_ORDER);
        assert_eq!(picsou_endpoint_next_transmit(ep, &mut x), PICSOU_OK);
        assert_eq!(x, 1);
        assert_eq!(picsou_endpoint_transmit_capacity(ep, &mut x), PICSOU_OK);
        let mut y = 0u64;
        assert_eq!(picsou_endpoint_submit_capacity(ep, &mut y), PICSOU_OK);
        assert_eq!(x, y);
        assert_eq!(picsou_endpoint_quack(ep, &mut x), PICSOU_OK);
        assert_eq!(x, 0);
        assert_eq!(picsou_endpoint_free(ep), PICSOU_OK);
    }
}

#[test]
fn a_mem_node_is_refused_with_a_transport_error() {
    let config = deployment(1, 0, 21400, "mem");
    let mut node = null_mut();
    // SAFETY: valid strings and output.
    let r = unsafe { picsou_node_new(config.as_ptr(), c"alpha".as_ptr(), 0, &mut node) };
    assert_eq!(r, PICSOU_ERR_TRANSPORT);
    assert!(node.is_null());
    assert!(last_error().contains("mem"), "{}", last_error());
}

/// Deliveries seen by the callback.
static SEEN: Mutex<Vec<(u64, Vec<u8>)>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_delivery(user: *mut c_void, seq: u64, data: *const u8, len: usize) {
    assert_eq!(user as usize, 0x1234);
    // SAFETY: libpicsou passes `len` readable bytes at `data` for the call's duration.
    let bytes = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
    SEEN.lock().unwrap().push((seq, bytes));
}

#[test]
fn nodes_over_tcp_deliver_by_polling_and_by_callback() {
    let config = deployment(3, 1, 21500, "tcp");
    let mut nodes = Vec::new();
    // SAFETY: valid strings and outputs; handles freed once below.
    unsafe {
        for (rsm, name) in [(0u8, c"alpha"), (1, c"beta")] {
            for i in 0..3 {
                let mut n = null_mut();
                let r = picsou_node_new(config.as_ptr(), name.as_ptr(), i, &mut n);
                assert_eq!(r, PICSOU_OK, "{}", last_error());
                nodes.push((rsm, n));
            }
        }
        let (a, b) = (nodes[0].1, nodes[3].1);
        // Submit once every node is connected to its 5 peers both ways: the transport drops
        // frames to peers it is not connected to yet.
        let deadline = Instant::now() + Duration::from_secs(20);
        for &(_, n) in &nodes {
            let mut count = 0u16;
            assert_eq!(picsou_node_replica_count(n, 1, &mut count), PICSOU_OK);
            assert_eq!(count, 3);
            loop {
                let mut st = crate::stats::picsou_node_stats::default();
                assert_eq!(picsou_node_get_stats(n, &mut st), PICSOU_OK);
                if st.transport.connects >= st.transport.disconnects + 10 {
                    break;
                }
                assert!(Instant::now() < deadline, "not connected: {st:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The same address twice: the transport cannot listen.
        let mut c = null_mut();
        assert_eq!(picsou_node_new(config.as_ptr(), c"beta".as_ptr(), 0, &mut c), PICSOU_ERR_TRANSPORT);
        assert_eq!(picsou_node_set_delivery_callback(b, Some(on_delivery), 0x1234 as *mut c_void), PICSOU_OK);
        assert_eq!(
            picsou_node_set_delivery_callback(b, Some(on_delivery), null_mut()),
            PICSOU_ERR_INVALID_STATE,
            "one callback per node"
        );
        let mut d = null_mut();
        assert_eq!(picsou_node_next_delivery(b, 0, &mut d), PICSOU_ERR_INVALID_STATE);
        const N: u64 = 100;
        for seq in 0..N {
            for &(rsm, node) in &nodes {
                let m = message(rsm, seq);
                assert_eq!(picsou_node_submit(node, seq, m.as_ptr(), m.len(), null(), 0), PICSOU_OK);
            }
        }
        assert_eq!(picsou_node_try_submit(a, 5, b"x".as_ptr(), 1, null(), 0), PICSOU_ERR_OUT_OF_ORDER);
        let mut got = 0;
        while got < N {
            assert!(Instant::now() < deadline, "a delivered only {got}");
            let mut d = null_mut();
            match picsou_node_next_delivery(a, 50, &mut d) {
                PICSOU_EMPTY => continue,
                r => assert_eq!(r, PICSOU_OK, "{}", last_error()),
            }
            let (mut seq, mut data, mut len) = (0u64, null(), 0usize);
            assert_eq!(picsou_delivery_get(d, &mut seq, &mut data, &mut len), PICSOU_OK);
            assert_eq!(seq, got);
            assert_eq!(std::slice::from_raw_parts(data, len), &message(1, seq)[..]);
            let (mut p, mut plen) = (null(), 0usize);
            assert_eq!(picsou_delivery_proof(d, &mut p, &mut plen), PICSOU_EMPTY, "library-managed: no proof");
            assert_eq!(picsou_delivery_free(d), PICSOU_OK);
            assert_eq!(picsou_delivery_free(d), PICSOU_ERR_INVALID_HANDLE);
            got += 1;
        }
        while SEEN.lock().unwrap().len() < N as usize {
            assert!(Instant::now() < deadline, "b's callback saw only {}", SEEN.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(10));
        }
        for (i, (seq, bytes)) in SEEN.lock().unwrap().iter().enumerate() {
            assert_eq!((*seq, &bytes[..]), (i as u64, &message(0, i as u64)[..]));
        }
        let mut q = 0;
        while q < N {
            assert!(Instant::now() < deadline, "quack stuck at {q}");
            assert_eq!(picsou_node_quacked(a, &mut q), PICSOU_OK);
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut stats = crate::stats::picsou_node_stats::default();
        assert_eq!(picsou_node_get_stats(a, &mut stats), PICSOU_OK);
        let mut stopped = true;
        assert_eq!(picsou_node_is_stopped(a, &mut stopped), PICSOU_OK);
        assert!(!stopped);
        for &(_, n) in &nodes {
            assert_eq!(picsou_node_free(n), PICSOU_OK, "{}", last_error());
        }
        assert_eq!(picsou_node_free(b), PICSOU_ERR_INVALID_HANDLE);
    }
}

#[test]
fn nodes_with_per_replica_keys_read_their_identity_files() {
    use picsou_runtime::deployment::{DeploymentConfig, keygen};
    let dir = tempfile::tempdir().unwrap();
    let plain = deployment(3, 1, 21700, "tcp").into_string().unwrap();
    // Per-replica keys in files (what `picsou keygen` writes); the text lists public keys.
    let template = DeploymentConfig::from_toml_str(&plain, "t.toml").unwrap();
    let keyed = keygen::generate(&template, dir.path(), false).unwrap();
    let config = CString::new(keyed.to_toml_string()).unwrap();
    let file = |name: &str| CString::new(dir.path().join(name).to_str().unwrap()).unwrap();
    // SAFETY: valid strings and outputs; handles freed below.
    unsafe {
        // keys.identity_file in the text, or an explicit file.
        let mut a = null_mut();
        assert_eq!(picsou_node_new(config.as_ptr(), c"alpha".as_ptr(), 0, &mut a), PICSOU_OK, "{}", last_error());
        let mut b = null_mut();
        let own = file("beta-0.key");
        let r = picsou_node_new_with_identity(config.as_ptr(), c"beta".as_ptr(), 0, own.as_ptr(), 0, 0, &mut b);
        assert_eq!(r, PICSOU_OK, "{}", last_error());
        // Another replica's identity is refused with a configuration error naming it.
        let mut c = null_mut();
        let other = file("beta-2.key");
        let r = picsou_node_new_with_identity(config.as_ptr(), c"beta".as_ptr(), 1, other.as_ptr(), 0, 0, &mut c);
        assert_eq!(r, PICSOU_ERR_CONFIG);
        assert!(last_error().contains("beta/1") && last_error().contains("lists"), "{}", last_error());
        let missing = file("nope.key");
        let r = picsou_node_new_with_identity(config.as_ptr(), c"beta".as_ptr(), 1, missing.as_ptr(), 0, 0, &mut c);
        assert_eq!(r, PICSOU_ERR_CONFIG);
        assert!(last_error().contains("cannot read identity file"), "{}", last_error());
        assert!(c.is_null());
        assert_eq!(picsou_node_free(a), PICSOU_OK);
        assert_eq!(picsou_node_free(b), PICSOU_OK);
    }
}
