//! Parse + score throughput on realistic model outputs (criterion).
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rner::data::Entity;

fn outputs() -> Vec<(String, Vec<Entity>)> {
    let gold = vec![
        Entity::new("Geoffrey Hinton", "researcher"),
        Entity::new("Turing Award", "award"),
        Entity::new("University of Toronto", "university"),
        Entity::new("backpropagation", "algorithm"),
    ];
    let answer = rner::prompt::answer_json(&gold);
    vec![
        (answer.clone(), gold.clone()),
        (format!("<think>\nThe sentence names a researcher, an award and a university.\n</think>\n{answer}"), gold.clone()),
        (format!("Sure! Here is the answer:\n```json\n{answer}\n```\nLet me know if you need more."), gold.clone()),
        ("The sentence is about Geoffrey Hinton who won the Turing Award and".repeat(8), gold.clone()),
        ("{\"entities\": [\"Geoffrey Hinton\"]}".to_string(), gold),
    ]
}

fn bench(c: &mut Criterion) {
    let cases = outputs();
    let mut g = c.benchmark_group("parse_score");
    g.throughput(Throughput::Elements(cases.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for (text, _) in &cases {
                black_box(rner::parse::prediction(black_box(text)));
            }
        })
    });
    g.bench_function("parse+score", |b| {
        b.iter(|| {
            for (text, gold) in &cases {
                let p = rner::parse::prediction(black_box(text));
                black_box(rner::score::sentence(&p.entities, gold));
            }
        })
    });
    g.finish();
    let per: Vec<rner::score::Counts> = (0..2000).map(|i| rner::score::Counts { gold: 3, predicted: 3, matched: i % 4 }).collect();
    c.bench_function("bootstrap_ci_1000x2000", |b| b.iter(|| black_box(rner::score::bootstrap_ci(&per, 1000, 7))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
