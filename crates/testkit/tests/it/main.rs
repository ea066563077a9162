//! The test kit's own tests: every fault observable from a raw TCP client or reqwest
//! within bounded time, the doubles' routes, and the `sparklio-testkit` binary.

mod binary;
mod comfyui;
mod faults;
mod fixed;
mod ollama;
mod ports;
mod raw;
mod rules;
