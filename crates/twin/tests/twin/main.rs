//! Twin tests: readers on inline samples, the replay on small inline traces (golden summaries,
//! reproducibility), and — when ../shared/traces is present — every real trace.

mod readers;
mod real_traces;
mod replay;
