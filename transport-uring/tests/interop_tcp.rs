//! A uring replica and a tcp replica share the wire: hello and frames, both directions.

mod common;

use std::time::Duration;

use picsou_core::ReplicaId;
use picsou_runtime::transport::Transport;
use picsou_runtime::transport::tcp::TcpTransport;
use picsou_transport_conformance::Node;
use picsou_transport_conformance::harness::{exchange, free_addr, options, setup, wait_connected};
use picsou_transport_uring::UringTransport;

const U: ReplicaId = ReplicaId::new(0, 0);
const T: ReplicaId = ReplicaId::new(1, 0);
const U2: ReplicaId = ReplicaId::new(1, 1);

#[test]
fn uring_and_tcp_exchange_frames_both_ways() {
    if !common::uring_here() {
        return;
    }
    let all = [(U, free_addr()), (T, free_addr()), (U2, free_addr())];
    let opts = options();
    let mut nodes: Vec<Node> = vec![
        Node::new(U, Box::new(UringTransport::new(setup(U, &all), &opts).expect("uring")) as Box<dyn Transport>),
        Node::new(T, Box::new(TcpTransport::new(setup(T, &all), &opts.tcp).expect("tcp")) as Box<dyn Transport>),
        Node::new(U2, Box::new(UringTransport::new(setup(U2, &all), &opts).expect("uring")) as Box<dyn Transport>),
    ];
    wait_connected(&mut nodes, Duration::from_secs(30));
    exchange(&mut nodes, 3_000, Duration::from_secs(120));
    assert_eq!(nodes[0].t.kind(), "uring");
    assert_eq!(nodes[1].t.kind(), "tcp");
}
