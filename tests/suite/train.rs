//! Stage 2 on real parts: the candle decoder against llama.cpp on the default model, SFT that
//! resumes exactly, and export back to a GGUF llama.cpp decodes.
use candle_core::{DType, Device, Tensor};
use rner::data::Entity;
use rner::engine::llama::position_logits;
use rner::model::tokenizer::Tokenizer;
use rner::model::Model;
use rner::prompt::{self, Message, Rendered};

use crate::util::default_model;

fn chat(user: &str) -> Rendered {
    Rendered { messages: vec![Message { role: "user".into(), content: user.into() }], text: None }
}

/// Fixed prompts with their answers, tokenised as SFT does.
fn fixed_sequences(tok: &Tokenizer) -> Vec<Vec<u32>> {
    let cases = [
        ("Apple is looking at buying U.K. startup for $1 billion", vec![Entity::new("Apple", "organization"), Entity::new("U.K.", "location")]),
        ("The film was directed by Steven Spielberg in 1993 .", vec![Entity::new("Steven Spielberg", "director"), Entity::new("1993", "year")]),
        ("is there a cheap thai place open after midnight near me", vec![Entity::new("cheap", "price"), Entity::new("thai", "cuisine")]),
    ];
    cases
        .iter()
        .map(|(s, ents)| {
            let user = prompt::instruction(&["location".into(), "organization".into(), "person".into()], s);
            let enc = tok.encode_pair(&chat(&user), &prompt::completion(ents, Some("Look at each name in turn."))).unwrap();
            enc.prompt.into_iter().chain(enc.target).collect()
        })
        .collect()
}

/// Top-1 agreement and the largest logit difference (relative to the logits' spread) between
/// candle (f32, dequantised weights) and llama.cpp (quantised weights) at every position.
fn agreement(a: &Tensor, b: &[Vec<f32>]) -> (usize, usize, f32) {
    let a = a.to_vec2::<f32>().unwrap();
    let (mut same, mut worst) = (0, 0f32);
    for (ra, rb) in a.iter().zip(b) {
        let am = ra.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
        let bm = rb.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
        same += (am == bm) as usize;
        let spread = rb.iter().cloned().fold(f32::MIN, f32::max) - rb.iter().cloned().fold(f32::MAX, f32::min);
        let d = ra.iter().zip(rb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / spread;
        worst = worst.max(d);
    }
    (same, a.len(), worst)
}

#[test]
fn candle_logits_agree_with_llama_cpp_on_the_default_model() {
    let path = default_model();
    let tok = Tokenizer::load(&path).unwrap();
    let model = Model::load(&path, &Device::Cpu, DType::F32).unwrap();
    let (mut same, mut total, mut worst) = (0, 0, 0f32);
    for seq in fixed_sequences(&tok) {
        let ours = model.sequence_logits(&seq).unwrap();
        let theirs = position_logits(&path, &seq, 2).unwrap();
        let (s, t, w) = agreement(&ours, &theirs);
        same += s;
        total += t;
        worst = worst.max(w);
    }
    eprintln!("top-1 agreement {same}/{total}, largest difference {:.4} of the logit range", worst);
    assert!(total > 300, "{total} positions");
    // llama.cpp multiplies Q4_1 weights by Q8-quantised activations; candle multiplies the same
    // weights dequantised, in f32: near-ties may flip, nothing else
    assert!(same as f64 >= 0.97 * total as f64, "top-1 agrees at {same} of {total} positions");
    assert!(worst < 0.08, "largest logit difference {worst} of the range");
}
