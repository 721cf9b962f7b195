//! `tidemark init`: a new project builds at once and ends with its scorecard; existing files are
//! never overwritten without `--force`.

use crate::common::{tidemark, transcript};

#[test]
fn an_initialised_project_builds_at_once_and_shows_its_scorecard() {
    let folder = tempfile::tempdir().unwrap();
    let output = tidemark(folder.path(), &["init", "demo"]);
    let text = transcript(&output, folder.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("Created project 'demo' in demo:"), "{text}");
    let project = folder.path().join("demo");
    for file in [
        "tidemark.yml",
        "profiles.yml",
        "models/sources.yml",
        "models/engagement.yml",
        "data/events.parquet",
        ".gitignore",
        ".github/workflows/tidemark.yml",
    ] {
        assert!(project.join(file).is_file(), "init wrote no {file}");
    }
    let profiles = std::fs::read_to_string(project.join("profiles.yml")).unwrap();
    assert!(
        profiles.contains("type: datafusion") && profiles.contains("# s3:"),
        "{profiles}"
    );

    let output = tidemark(&project, &["build"]);
    let text = transcript(&output, &project);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("Previewing latest_week"), "{text}");
    // The two learners who went quiet are flagged in the latest week, at the top.
    let preview = &text[text.find("Previewing latest_week").unwrap()..];
    let flagged: Vec<&str> = preview.lines().filter(|line| line.contains("sustained_drop")).collect();
    assert_eq!(flagged.len(), 2, "{preview}");
    assert!(flagged.iter().all(|line| line.contains("| high ")), "{preview}");
    assert!(preview.contains("| l08 ") && preview.contains("| l03 "), "{preview}");
}

#[test]
fn init_refuses_to_overwrite_a_project_unless_forced() {
    let folder = tempfile::tempdir().unwrap();
    assert_eq!(tidemark(folder.path(), &["init", "demo"]).status.code(), Some(0));
    let project = folder.path().join("demo");
    std::fs::write(project.join("tidemark.yml"), "name: mine\n").unwrap();
    std::fs::remove_file(project.join("models/learners.sql")).unwrap();

    let output = tidemark(folder.path(), &["init", "demo"]);
    let text = transcript(&output, folder.path());
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("demo already holds tidemark.yml, profiles.yml"), "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    assert!(text.contains("--force"), "{text}");
    assert_eq!(
        std::fs::read_to_string(project.join("tidemark.yml")).unwrap(),
        "name: mine\n"
    );
    assert!(
        !project.join("models/learners.sql").exists(),
        "a missing file was written anyway"
    );

    let output = tidemark(folder.path(), &["init", "demo", "--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, folder.path()));
    assert!(std::fs::read_to_string(project.join("tidemark.yml"))
        .unwrap()
        .contains("name: demo"));
    assert!(project.join("models/learners.sql").is_file());
}
