//! A linear layer's weight gradient in the two layouts `Lin::bwd` could compute it in (criterion):
//! dyᵀ·x straight into the weight's `[out, in]` layout, or (xᵀ·dy)ᵀ made contiguous, at the
//! shapes of SmolLM2-135M's 256-token training step. The hand-written backward uses the first.
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("weight_grad");
    g.sample_size(10);
    for (name, n, out, inp) in [("output_projection", 256, 49152, 576), ("ffn_gate", 256, 1536, 576), ("ffn_down", 256, 576, 1536)] {
        let x = Tensor::randn(0f32, 1.0, (n, inp), &Device::Cpu).unwrap();
        let dy = Tensor::randn(0f32, 1.0, (n, out), &Device::Cpu).unwrap();
        g.throughput(Throughput::Elements((2 * n * out * inp) as u64));
        g.bench_function(format!("{name}/dyT_x"), |b| b.iter(|| dy.t().unwrap().matmul(&x).unwrap()));
        g.bench_function(format!("{name}/xT_dy_transposed_copy"), |b| {
            b.iter(|| x.t().unwrap().matmul(&dy).unwrap().t().unwrap().contiguous().unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
