//! Request and response header rewriting and deny lists for tower and axum.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
