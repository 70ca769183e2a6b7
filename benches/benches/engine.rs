//! Criterion micro benchmarks of the engine: one sender and one receiver (1+1), and a 4+4
//! deployment with one crashed receiver (a quarter of first copies lost and resent), both with
//! 100-byte messages. Throughput counts messages delivered at every live receiver.
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use picsou_benches::Deployment;

const BATCH: u64 = 1024;
const TICK: Duration = Duration::from_micros(200);

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_100B");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("pair_1x1", |b| {
        let mut d = Deployment::new(1, 0, 100, &[]);
        b.iter(|| d.deliver(BATCH, BATCH, TICK));
    });
    g.bench_function("deployment_4x4_no_loss", |b| {
        let mut d = Deployment::new(4, 1, 100, &[]);
        b.iter(|| d.deliver(BATCH, BATCH, TICK));
    });
    g.bench_function("deployment_4x4_crashed_receiver", |b| {
        let mut d = Deployment::new(4, 1, 100, &[2]);
        b.iter(|| d.deliver(BATCH, BATCH, TICK));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = engine
}
criterion_main!(benches);
