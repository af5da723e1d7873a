//! Access log layer with redaction, and x-request-id handling, for tower and axum.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
