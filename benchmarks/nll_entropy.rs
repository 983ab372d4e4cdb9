//! The GRPO loss pass's per-token statistics on a micro-batch's logits (criterion): each row's
//! NLL of its target and the mean entropy of its softmax, composed from candle ops (NLL, then
//! softmax, log-softmax, product and sum: what the autograd path computes) or in one fused pass
//! over each row (`ops::nll_entropy`, what the hand-written pass uses). Shape: 512 completion
//! tokens × SmolLM2's 49,152-token vocabulary.
use candle_core::{Device, Tensor, D};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rner::model::ops;

fn bench(c: &mut Criterion) {
    let (rows, vocab) = (512usize, 49152usize);
    let logits = Tensor::randn(0f32, 3.0, (rows, vocab), &Device::Cpu).unwrap();
    let targets: Vec<u32> = (0..rows).map(|i| ((i * 7919) % vocab) as u32).collect();
    let mut g = c.benchmark_group("nll_entropy");
    g.sample_size(10);
    g.throughput(Throughput::Elements((rows * vocab) as u64));
    g.bench_function("composed", |b| {
        b.iter(|| {
            let nll = ops::nll(&logits, &targets).unwrap().to_vec1::<f32>().unwrap();
            let p = candle_nn::ops::softmax_last_dim(&logits).unwrap();
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
            let h = (p * lp).unwrap().sum(1).unwrap().neg().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
            (nll, h)
        })
    });
    g.bench_function("fused", |b| b.iter(|| ops::nll_entropy(&logits, &targets).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
