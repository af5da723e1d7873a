//! Fault-injection tests of the `portcullis` binary (issue #6): being written.
