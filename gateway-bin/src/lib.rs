//! The Portcullis gateway as a library: config, composition and listeners behind
//! the `portcullis` binary. End-to-end tests drive it through [`cli::run_command`]
//! or by spawning the binary.
//!
//! # Example
//!
//! ```
//! let config = portcullis_gateway::config::parse(
//!     "[[services]]\nname = \"api\"\nendpoints = [\"http://127.0.0.1:3000\"]\n\n\
//!      [[routes]]\npath = \"/api/\"\nservice = \"api\"\n",
//! ).map_err(|m| format!("{m:?}"))?;
//! assert_eq!(config.routes.len(), 1);
//! let _stack = portcullis_gateway::gateway::build(&config)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod io;
pub mod logfmt;
pub mod registry;
pub mod reload;
pub mod server;
pub mod services;
pub mod size;
