//! tidemark's integration tests, in one test binary so DataFusion and Ballista are linked once.
//!
//! Each module runs the `tidemark` binary (or the library) against real components: fixture
//! projects in temporary folders, a SeaweedFS S3 server and a Ballista cluster started on
//! 127.0.0.1 by the tests themselves (`common`).

mod common;

mod ballista;
mod cli;
mod commit;
mod crash;
mod dbt;
mod dbt_duckdb;
mod dialect;
mod docs;
mod errors;
mod hosts;
mod incremental;
mod init;
mod limits;
mod metrics;
mod notify;
mod packages;
mod s3;
mod secrets;
mod state;
mod store_faults;
