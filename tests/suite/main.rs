//! The one integration-test binary: a module per area.
mod data;
mod eval;
mod report;
mod util;
