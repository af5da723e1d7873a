//! Prometheus metrics layer for tower and axum, on the metrics facade.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
