//! Fuzz target: arbitrary bytes through the query and condition parsers, printer and evaluator
//! (see `query::fuzz_parse` for what is checked).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| query::fuzz_parse(data));
