//! What every eshop service shares, written once: configuration from the
//! environment, startup and graceful shutdown, health endpoints, Prometheus
//! metrics, `application/problem+json` errors, request ids and W3C trace
//! context, JSON logs, and exact money helpers.
//!
//! A service builds its own [`axum::Router`] of business routes and hands it
//! to [`server::App`], which wraps it in the shared layers and serves it.

pub mod auth;
pub mod config;
pub mod db;
pub mod extract;
pub mod health;
pub mod html;
pub mod ids;
pub mod metrics;
pub mod money;
pub mod otlp;
pub mod problem;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "testing")]
pub mod testing_browser;
#[cfg(feature = "testing")]
pub mod testing_otlp;

pub use problem::Problem;
