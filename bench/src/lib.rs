//! Pieces of the side-by-side harness (`cargo bench -p courier-bench`) worth testing on
//! their own: the figures one side of a comparison measured, and the table of ratios.

pub mod stats;
pub mod table;
