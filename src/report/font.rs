//! The font used for every plot: DejaVu Sans, embedded (see `assets/LICENSE-DejaVu.txt`).
//! plotters' `ab_glyph` text needs a registered font both to rasterise PNG text and to measure
//! text when laying out SVG.
use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::{Error, Result};

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The family name plots use.
pub const FAMILY: &str = "sans-serif";

/// Register DejaVu Sans as `sans-serif` once per process.
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Report("the embedded DejaVu Sans font could not be parsed".into()))
    }
}
