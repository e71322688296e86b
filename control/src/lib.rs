//! betwixt's control plane: configuration, discovery, healthchecks, balancing tables and the
//! immutable snapshots the data-plane shards route with.

pub mod access;
pub mod access_log;
pub mod acme;
pub mod api;
pub mod backend;
pub mod balance;
pub mod bind;
pub mod command;
pub mod config;
pub mod consul_api;
pub mod control;
pub mod discovery;
pub mod doorbell;
#[doc(hidden)]
pub mod fuzzing;
pub mod healthcheck;
pub mod log_limit;
pub mod logging;
pub mod metrics;
pub mod plane;
pub mod profiler;
pub mod proxy;
pub mod rates;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod sni;
pub mod spare_fd;
pub mod stats;
pub mod system_roots;
pub mod text;
pub mod tls;
pub mod upgrade;
