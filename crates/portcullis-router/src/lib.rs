//! Route table and matching for the Portcullis gateway: host, path templates, methods, headers.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
