//! The headless binary's tests as one test executable: `serve`, `config`, `check e2e`
//! (cli) and `route`.

mod cli;
mod discover;
mod models;
mod route;
