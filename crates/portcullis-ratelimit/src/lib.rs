//! GCRA rate limiting (placeholder: being written).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
