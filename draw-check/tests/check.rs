use ticketing_core::draw::{DrawSeed, PublishedDraw};
use ticketing_core::ids::{QueueId, UserId};

fn published(seed: &DrawSeed) -> PublishedDraw {
    let entrants: Vec<UserId> = (1..=100)
        .map(|id| UserId::new(id).expect("a user id"))
        .collect();
    PublishedDraw {
        queue_id: QueueId::parse("onsale").expect("a queue id"),
        commitment: seed.commitment(),
        seed: Some(seed.clone()),
        order: seed.order(&entrants),
    }
}

#[test]
fn a_kept_draw_checks_out_and_tells_a_fan_their_place() {
    let seed = DrawSeed::from_bytes([7; 32]);
    let draw = published(&seed);
    let json = serde_json::to_string(&draw).unwrap();
    let first = draw.order[0];
    let report = draw_check::check(&json, None, Some(&first.to_string())).unwrap();
    assert!(report.contains("checks out: 100 entrants"), "{report}");
    assert!(
        report.contains(&format!("user {first} was drawn 1 of 100")),
        "{report}"
    );
}

#[test]
fn a_reordered_draw_is_refused_naming_the_place() {
    let seed = DrawSeed::from_bytes([7; 32]);
    let mut draw = published(&seed);
    draw.order.swap(0, 1);
    let json = serde_json::to_string(&draw).unwrap();
    let error = format!("{:#}", draw_check::check(&json, None, None).unwrap_err());
    assert!(error.contains("place 1 went to user"), "{error}");
}

#[test]
fn a_seed_swapped_with_its_commitment_is_caught_by_the_commitment_saved_before() {
    let before = DrawSeed::from_bytes([1; 32]).commitment().to_string();
    let json = serde_json::to_string(&published(&DrawSeed::from_bytes([2; 32]))).unwrap();
    assert!(draw_check::check(&json, None, None).is_ok());
    let error = format!(
        "{:#}",
        draw_check::check(&json, Some(&before), None).unwrap_err()
    );
    assert!(
        error.contains("does not hash to the published commitment"),
        "{error}"
    );
}

#[test]
fn a_fan_missing_from_the_draw_is_told_so() {
    let json = serde_json::to_string(&published(&DrawSeed::from_bytes([3; 32]))).unwrap();
    let error = format!(
        "{:#}",
        draw_check::check(&json, None, Some("555")).unwrap_err()
    );
    assert!(
        error.contains("user 555 is not among the entrants"),
        "{error}"
    );
}

#[test]
fn the_command_reads_the_draw_from_a_file_and_fails_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("draw-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    let seed = DrawSeed::from_bytes([5; 32]);
    std::fs::write(&good, serde_json::to_string(&published(&seed)).unwrap()).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_draw-check"))
            .args(args)
            .output()
            .unwrap()
    };
    let ok = run(&[good.as_os_str()]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("checks out"));

    let wrong = DrawSeed::from_bytes([6; 32]).commitment().to_string();
    let refused = run(&["--commitment".as_ref(), wrong.as_ref(), good.as_os_str()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not hash"));
    std::fs::remove_dir_all(dir).unwrap();
}
