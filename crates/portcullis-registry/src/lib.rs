//! Service registry for the Portcullis gateway: services, endpoints with leases, load balancing, state stores.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
