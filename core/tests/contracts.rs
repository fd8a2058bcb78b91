//! Files outside Rust that must agree with the core: the OpenAPI document (what clients and
//! the API fuzzer trust) and the topic list the local scripts and compose create.

use ticketing_core::ErrorCode;
use ticketing_core::events::Topic;

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The `enum:` entries of the `ErrorCode` schema in `openapi.yaml`.
fn documented_error_codes() -> Vec<String> {
    let spec = repo_file("openapi.yaml");
    let mut lines = spec.lines().skip_while(|l| l.trim() != "ErrorCode:");
    let _ = lines.by_ref().find(|l| l.trim() == "enum:");
    lines
        .map_while(|l| l.trim().strip_prefix("- ").map(str::to_owned))
        .collect()
}

fn core_topics() -> Vec<&'static str> {
    Topic::ALL.iter().map(|t| t.name()).collect()
}

#[test]
fn openapi_documents_exactly_the_error_codes_of_the_core() {
    let produced: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(documented_error_codes(), produced);
}

#[test]
fn the_local_scripts_create_exactly_the_topics_of_the_core() {
    let lib = repo_file("infra/local/lib.sh");
    let line = lib
        .lines()
        .find_map(|l| l.strip_prefix("TOPICS=("))
        .expect("a TOPICS=(...) line in infra/local/lib.sh");
    let scripted: Vec<&str> = line.trim_end_matches(')').split_whitespace().collect();
    assert_eq!(scripted, core_topics());
}

#[test]
fn compose_creates_exactly_the_topics_of_the_core() {
    let compose = repo_file("infra/compose.yaml");
    let line = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("for topic in "))
        .expect("a topic loop in infra/compose.yaml");
    let scripted: Vec<&str> = line.trim_end_matches("; do").split_whitespace().collect();
    assert_eq!(scripted, core_topics());
}
