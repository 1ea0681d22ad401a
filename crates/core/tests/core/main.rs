//! Integration tests of the domain crate: the reference data and the job spec.

mod job_spec;
mod network_data;
