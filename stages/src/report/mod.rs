//! The Table 1 style report: result files written by `histodiffusion/evaluate` and
//! `histodiffusion/fid` ([`results`]), the paper's numbers to print alongside them
//! ([`paper`]), the Markdown and CSV table ([`table`]) with the mean ± spread over seeds
//! ([`spread`]), labelled image grids of samples ([`grid`]), loss curves ([`curves`]) and
//! the table's metrics against the augmentation ratio as charts ([`figures`]).

pub mod curves;
pub mod figures;
pub mod grid;
pub mod paper;
pub mod results;
pub mod spread;
pub mod table;
