//! Checkpoints that lose nothing: weights, optimiser moments and the trainer's position, written
//! to a temporary directory and renamed into place, so a crash mid-write leaves the previous one.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{de::DeserializeOwned, Serialize};

use super::optim::AdamW;
use crate::model::Model;
use crate::util::{read_json, write_atomic, write_json};
use crate::{Error, Result};

/// `dir/step-000042`
pub fn step_dir(dir: &Path, step: usize) -> PathBuf {
    dir.join(format!("step-{step:06}"))
}

/// Save a checkpoint of `model`'s weights, `opt`'s moments and the trainer's `state` at update
/// `step`, point `dir/latest` at it and keep the newest `keep`.
pub fn save<S: Serialize>(dir: &Path, step: usize, model: &Model, opt: &AdamW, state: &S, keep: usize) -> Result<PathBuf> {
    let weights: HashMap<String, Tensor> = model.params.iter().map(|(n, v)| (n.to_string(), v.as_tensor().clone())).collect();
    let optim = opt.state(&model.params.names)?;
    let tmp = dir.join(format!(".tmp-step-{step:06}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    candle_core::safetensors::save(&weights, tmp.join("model.safetensors"))?;
    if !optim.is_empty() {
        candle_core::safetensors::save(&optim, tmp.join("optim.safetensors"))?;
    }
    write_json(&tmp.join("state.json"), state)?;
    let fin = step_dir(dir, step);
    let _ = std::fs::remove_dir_all(&fin);
    std::fs::rename(&tmp, &fin).map_err(|e| Error::io(&fin, e))?;
    write_atomic(&dir.join("latest"), fin.file_name().expect("named").to_string_lossy().as_bytes())?;
    let mut all = list(dir)?;
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        let _ = std::fs::remove_dir_all(step_dir(dir, old));
    }
    Ok(fin)
}

/// Steps of the complete checkpoints in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<usize>> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut steps: Vec<usize> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("step-")).and_then(|s| s.parse().ok()))
        .collect();
    steps.sort();
    Ok(steps)
}

/// The checkpoint `dir/latest` names, if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(dir.join("latest")).ok()?;
    let p = dir.join(name.trim());
    p.join("state.json").exists().then_some(p)
}

/// `p` itself when it is a checkpoint (`state.json`), else the newest checkpoint of the run
/// folder `p`.
pub fn resolve(p: &Path) -> Option<PathBuf> {
    if p.join("state.json").exists() {
        Some(p.to_path_buf())
    } else {
        latest(p)
    }
}

/// The GGUF a checkpoint's training started from (`source` in its state), if it names one.
pub fn source_of(ck: &Path) -> Option<PathBuf> {
    let state: serde_json::Value = crate::util::read_json(&ck.join("state.json")).ok()?;
    state.get("source")?.as_str().map(PathBuf::from)
}

/// A checkpoint's pieces.
pub struct Loaded<S> {
    pub weights: HashMap<String, Tensor>,
    pub optim: HashMap<String, Tensor>,
    pub state: S,
}

pub fn load<S: DeserializeOwned>(ckpt: &Path) -> Result<Loaded<S>> {
    let dev = candle_core::Device::Cpu;
    let w = ckpt.join("model.safetensors");
    let weights = candle_core::safetensors::load(&w, &dev).map_err(|e| Error::Model { path: w.clone(), msg: e.to_string() })?;
    let o = ckpt.join("optim.safetensors");
    let optim = if o.exists() {
        candle_core::safetensors::load(&o, &dev).map_err(|e| Error::Model { path: o.clone(), msg: e.to_string() })?
    } else {
        HashMap::new()
    };
    Ok(Loaded { weights, optim, state: read_json(&ckpt.join("state.json"))? })
}

/// Resume a training run from the newest checkpoint in `dir`, if there is one: a checkpoint whose
/// state `same` rejects (other settings or data) is an error; otherwise its weights go into
/// `model`, its moments into `opt` (`updates(state)` updates taken) and its state is returned.
pub fn resume<S: DeserializeOwned>(dir: &Path, model: &Model, opt: &mut AdamW, same: impl Fn(&S) -> bool, updates: impl Fn(&S) -> usize) -> Result<Option<S>> {
    let Some(ck) = latest(dir) else { return Ok(None) };
    let loaded = load::<S>(&ck)?;
    if !same(&loaded.state) {
        return Err(Error::Run {
            dir: dir.to_path_buf(),
            msg: "a checkpoint of different settings or data is here: pass another --name, or delete it to start over".into(),
        });
    }
    model.set_weights(&loaded.weights)?;
    opt.load_state(&model.params.names, updates(&loaded.state), &loaded.optim)?;
    Ok(Some(loaded.state))
}

/// After update `done` of `end`: save (through `save`) every `every` updates and at the end; on
/// Ctrl-C save unless just saved and return true, to stop. `last` is the newest checkpoint.
pub fn after_step(done: usize, end: usize, every: usize, last: &mut Option<PathBuf>, mut save: impl FnMut() -> Result<PathBuf>) -> Result<bool> {
    let due = done % every.max(1) == 0 || done == end;
    if due {
        *last = Some(save()?);
    }
    if crate::run::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        if !due {
            *last = Some(save()?);
        }
        return Ok(true);
    }
    Ok(false)
}

/// The folder under a training run's log folder (`results/train/<name>/`) that keeps the logs of
/// its earlier exports: `earlier/<first 8 hex digits of the export's sha256>/`.
pub const EARLIER: &str = "earlier";

/// Before a run starts over (no checkpoint in `ckpt_dir` to resume from): when `log_dir` logs an
/// earlier run of the name that was exported (`export_sha256` in its `run.json`), move its
/// `run.json` and `steps.jsonl` to `log_dir/earlier/<sha8>/`, so that what was scored or
/// fine-tuned from that file keeps the log that made it. Returns the folder they went to.
pub fn keep_earlier_log(log_dir: &Path, ckpt_dir: &Path) -> Result<Option<PathBuf>> {
    let run = log_dir.join("run.json");
    if latest(ckpt_dir).is_some() || !run.is_file() {
        return Ok(None);
    }
    let v: serde_json::Value = read_json(&run)?;
    let Some(sha) = v.get("export_sha256").and_then(|s| s.as_str()).filter(|s| s.len() >= 8) else { return Ok(None) };
    let to = log_dir.join(EARLIER).join(&sha[..8]);
    std::fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
    for f in ["run.json", "steps.jsonl"] {
        let p = log_dir.join(f);
        if p.is_file() {
            std::fs::rename(&p, to.join(f)).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(Some(to))
}

/// Reopen a run's step log for appending after a resume: rows past the checkpoint (logged by
/// the crashed process after its last checkpoint) are dropped, so the curve has each step once.
pub fn reopen_log<T: Serialize + DeserializeOwned>(path: &Path, keep: impl Fn(&T) -> bool) -> Result<std::fs::File> {
    let mut rows: Vec<T> = crate::util::read_jsonl(path).unwrap_or_default();
    rows.retain(|r| keep(r));
    let mut text = String::new();
    for r in &rows {
        text.push_str(&serde_json::to_string(r).map_err(|e| Error::Json { path: path.into(), err: e })?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())?;
    std::fs::OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_run_starting_over_keeps_its_log() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, ck) = (tmp.path().join("train/m"), tmp.path().join("ck/m"));
        // no log yet, or one without an export (a run never finished): nothing moves
        assert_eq!(keep_earlier_log(&log, &ck).unwrap(), None);
        write_json(&log.join("run.json"), &serde_json::json!({"name": "m", "export_sha256": null})).unwrap();
        assert_eq!(keep_earlier_log(&log, &ck).unwrap(), None);
        assert!(log.join("run.json").is_file());
        // a finished, exported run: its log moves under earlier/<sha8>/
        let sha = "0123456789abcdef".repeat(4);
        write_json(&log.join("run.json"), &serde_json::json!({"name": "m", "export_sha256": sha})).unwrap();
        std::fs::write(log.join("steps.jsonl"), "{\"step\":1}\n").unwrap();
        // ... but not while a checkpoint is there to resume from
        std::fs::create_dir_all(ck.join("step-000001")).unwrap();
        std::fs::write(ck.join("step-000001/state.json"), "{}").unwrap();
        std::fs::write(ck.join("latest"), "step-000001").unwrap();
        assert_eq!(keep_earlier_log(&log, &ck).unwrap(), None);
        std::fs::remove_dir_all(&ck).unwrap();
        let to = keep_earlier_log(&log, &ck).unwrap().unwrap();
        assert_eq!(to, log.join("earlier/01234567"));
        assert!(!log.join("run.json").exists() && !log.join("steps.jsonl").exists());
        assert_eq!(std::fs::read_to_string(to.join("steps.jsonl")).unwrap(), "{\"step\":1}\n");
        let kept: serde_json::Value = read_json(&to.join("run.json")).unwrap();
        assert_eq!(kept["export_sha256"], sha);
    }
}
