//! The paper's protocol end to end: the prompt on real data, answer round trips through the
//! parser, and a structured fuzz of the parser.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rner::data::Entity;
use rner::prompt::{answer_json, completion, render, PromptSpec, Template};

use crate::util::data_dir;

fn random_text(rng: &mut ChaCha8Rng) -> String {
    const PIECES: &[&str] = &["Bob", " ", "the", "\"", "\\", "é", "東京", "{", "}", "[", "]", ":", ",", "\n", "<think>", "</answer>", "```", "'", "\u{FF1A}", "a", "N.Y."];
    (0..rng.gen_range(1..6)).map(|_| PIECES[rng.gen_range(0..PIECES.len())]).collect()
}

#[test]
fn every_gold_answer_round_trips_through_the_parser() {
    let reg = rner::data::Registry::new(&data_dir()).unwrap();
    for name in rner::data::ZERO_SHOT {
        for ex in reg.load(name, "test").unwrap() {
            for cot in [None, Some("Step 1: find spans.\nStep 2: type them.")] {
                let text = completion(&ex.gold, cot);
                let p = rner::parse::prediction(&text);
                assert_eq!(p.error, None, "{}: {text}", ex.id);
                let c = rner::score::sentence(&p.entities, &ex.gold).total;
                // a perfect answer scores all of the sentence's distinct gold
                assert_eq!((c.matched, c.predicted), (c.gold, c.gold), "{}", ex.id);
                assert_eq!(p.think.as_deref(), cot.map(|c| format!("\n{c}\n")).as_deref());
            }
        }
    }
}

#[test]
fn prompt_on_real_data_has_the_paper_shape() {
    let reg = rner::data::Registry::new(&data_dir()).unwrap();
    let ex = &reg.load("crossner_music", "test").unwrap()[0];
    let r = render(ex, &PromptSpec { template: Template::Qwen, add_source: false });
    let t = r.text.unwrap();
    assert!(t.contains("Schema\u{FF1A}\n[\"album\", \"award\", \"band\", \"country\", \"event\", \"location\", \"music genre\", \"musical artist\", \"musical instrument\", \"organization\", \"person\", \"song\"]\n"), "{t}");
    assert!(!t.contains("\"else\"") && !t.contains("\"misc\""));
    assert!(t.ends_with(&format!("Sentence:\n{}<|im_end|>\n<|im_start|>assistant\n", ex.text)));
}

#[test]
fn random_answers_round_trip_and_junk_never_panics() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..3000 {
        let ents: Vec<Entity> = (0..rng.gen_range(0..6))
            .map(|_| Entity::new(random_text(&mut rng).trim().to_string(), random_text(&mut rng).trim().to_lowercase()))
            .filter(|e| !e.label.is_empty())
            .collect();
        let text = answer_json(&ents);
        let p = rner::parse::prediction(&text);
        if !text.contains("<think>") && !text.contains("</think>") && !text.contains("```json") && !text.contains("<answer>") {
            assert_eq!(p.error, None, "{text}");
            let mut got: Vec<(String, String)> = p.entities.iter().map(|e| (e.text.clone(), e.label.clone())).collect();
            let mut want: Vec<(String, String)> = ents.iter().map(|e| (e.text.trim().to_string(), e.label.trim().to_string())).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{text}");
        }
        // cut anywhere, wrap anyhow: never a panic
        let cut = rng.gen_range(0..=text.len());
        let cut = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap();
        for s in [&text[..cut], &format!("<think>{}</think>```json{}```", random_text(&mut rng), &text[cut..])] {
            let _ = rner::parse::prediction(s);
        }
    }
}
