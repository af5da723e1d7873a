//! Authentication layer for tower and axum: API keys, HTTP Basic and JWT.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
