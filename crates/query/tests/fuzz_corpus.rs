//! Runs every committed fuzz corpus input through the fuzz entry point, so the corpus and the
//! target's checks keep working on stable, where libFuzzer itself cannot run.

use std::path::Path;

#[test]
fn corpus_inputs_pass_the_fuzz_checks() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut n_inputs = 0;
    for entry in std::fs::read_dir(&corpus).expect("read the fuzz corpus directory") {
        let path = entry.expect("read a corpus entry").path();
        let data = std::fs::read(&path).expect("read a corpus file");
        query::fuzz_parse(&data);
        n_inputs += 1;
    }
    assert!(
        n_inputs >= 24,
        "expected a few dozen corpus inputs in {}, found {n_inputs}",
        corpus.display()
    );
}

#[test]
fn corpus_covers_valid_and_invalid_queries() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let texts: Vec<String> = std::fs::read_dir(&corpus)
        .expect("read the fuzz corpus directory")
        .map(|entry| {
            std::fs::read_to_string(entry.expect("read a corpus entry").path())
                .expect("corpus is UTF-8")
        })
        .collect();
    let parses =
        |text: &String| query::parse_query(text).is_ok() || query::parse_condition(text).is_ok();
    assert!(texts.iter().filter(|text| parses(text)).count() >= 10, "too few valid seeds");
    assert!(texts.iter().filter(|text| !parses(text)).count() >= 10, "too few invalid seeds");
}
