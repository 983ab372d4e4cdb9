//! The one integration-test binary: a module per area.
mod api;
mod constrained;
mod cot;
mod data;
mod eval;
mod protocol;
mod report;
mod reproduce;
mod site;
mod train;
mod util;
