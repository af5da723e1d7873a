//! Active and passive health checking of upstream endpoints for the Portcullis gateway.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
