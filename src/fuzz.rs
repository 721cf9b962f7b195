//! Fuzzing the parsers: every input tidemark reads from a user is mutated at random from real
//! examples and fed to its parser, which must answer (a value or a diagnostic) without
//! panicking and without hanging.
//!
//! Targets: the project file, property files, `profiles.yml` (rendered, then read), metric-model
//! specs (parsed and validated), Jinja model files (the parse render) and selector expressions
//! (evaluated on the example project's graph). Inputs come from a seeded generator, so a run is
//! reproducible: mutations of the example project's own files (bytes inserted, deleted,
//! duplicated or replaced, with YAML, Jinja and selector tokens among the insertions) and
//! now and then wholly random text.
//!
//! `cargo test --lib fuzz` runs `TIDEMARK_FUZZ_CASES` inputs per target (default 1,000: the
//! short run CI does); `TIDEMARK_FUZZ_SEED` changes the sequence. The long run is in the README
//! (release build, millions of inputs). A panic fails the test with the input that caused it; an
//! input that runs longer than 10 s aborts the run and prints it (a hang).

#![allow(clippy::print_stderr, reason = "the fuzzer reports its counts, and a hang's input")]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tokens worth inserting: what breaks YAML, Jinja and selectors in interesting ways.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    ":",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "\n",
    "\n  ",
    "  ",
    "\t",
    "&a ",
    "*a",
    "!!str ",
    "!!",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "|",
    ">",
    "#",
    ",",
    "+",
    "@",
    "*",
    "1+",
    "+1",
    "tag:",
    "path:",
    "state:modified",
    "config.materialized:",
    "resource_type:",
    "source:",
    "exposure:",
    "\u{0}",
    "\u{feff}",
    "é",
    "𝄞",
    "null",
    "~",
    "true",
    "0",
    "-1",
    "1e309",
    "99999999999999999999",
    "NaN",
    "{{ ref('x') }}",
    "{{ var('v') }}",
    "{% for x in range(3) %}",
    "{% endfor %}",
    "{% if true %}",
    "{% endif %}",
    "{% macro m() %}",
    "{% endmacro %}",
    "{{ config(materialized='table') }}",
    "{{ env_var('TIDEMARK_FUZZ_UNSET') }}",
    "{{ 1/0 }}",
    "{{ x.y.z }}",
    "(",
    ")",
    "select",
    "from",
    "where",
    "'; drop table x; --",
    "../",
    "/",
    "\\",
    "$",
    "%",
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// `seed` with a few random edits (or, one time in twenty, random text).
fn mutate(rng: &mut Rng, seed: &str) -> String {
    if rng.below(20) == 0 {
        let length = rng.below(200);
        return (0..length)
            .map(|_| match rng.below(3) {
                0 => TOKENS[rng.below(TOKENS.len())].to_string(),
                _ => char::from_u32(32 + rng.below(95) as u32).unwrap_or(' ').to_string(),
            })
            .collect();
    }
    let mut bytes = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                bytes.splice(at..at, token.bytes());
            }
            1 => {
                let end = (at + 1 + rng.below(40)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 => {
                let end = (at + 1 + rng.below(60)).min(bytes.len());
                let copy: Vec<u8> = bytes[at.min(end)..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
            3 if at < bytes.len() => bytes[at] = rng.below(256) as u8,
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let times = 1 + rng.below(64);
                bytes.splice(at..at, token.repeat(times).bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn cases() -> usize {
    std::env::var("TIDEMARK_FUZZ_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000)
}

fn seed_value() -> u64 {
    std::env::var("TIDEMARK_FUZZ_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x7469_6465_6d61_726b)
}

/// Runs `check` on `cases()` mutations of `seeds`; returns the inputs that panicked.
fn fuzz(target: &str, seeds: &[String], check: impl Fn(&str)) -> (usize, Vec<String>) {
    let mut rng = Rng(seed_value()
        ^ target.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        }));
    let started = Arc::new(AtomicU64::new(0));
    let current = Arc::new(Mutex::new(String::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clock = Instant::now();
    // The watchdog: an input running for 10 s is a hang.
    let watchdog = {
        let (started, current, done, target) = (started.clone(), current.clone(), done.clone(), target.to_string());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let since = started.load(Ordering::Relaxed);
                let now = clock.elapsed().as_millis() as u64;
                if since > 0 && now.saturating_sub(since) > 10_000 {
                    let input = current.lock().map(|input| input.clone()).unwrap_or_default();
                    eprintln!("fuzz {target}: an input ran for over 10 s (a hang):\n{input:?}");
                    std::process::abort();
                }
            }
        })
    };
    let mut panics = Vec::new();
    let total = cases();
    for _ in 0..total {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        if let Ok(mut slot) = current.lock() {
            slot.clone_from(&input);
        }
        started.store(clock.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            panics.push(input);
        }
        started.store(0, Ordering::Relaxed);
    }
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    (total, panics)
}

fn repository_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap_or_default()
}

/// Every file of the example project under `folder` with this extension.
fn example_files(folder: &str, extension: &str) -> Vec<String> {
    walkdir::WalkDir::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(folder))
        .into_iter()
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|e| e == extension))
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .collect()
}

fn report(target: &str, (total, panics): (usize, Vec<String>)) -> Option<String> {
    eprintln!("fuzz {target}: {total} inputs, {} panics", panics.len());
    (!panics.is_empty()).then(|| {
        format!(
            "{target}: {} of {total} inputs panicked; the first:\n{:?}",
            panics.len(),
            panics[0]
        )
    })
}

#[test]
fn parsers_never_panic_or_hang_on_mutated_input() {
    // A caught panic still prints through the hook: keep this thread's output to the summary,
    // and let other tests' panics print as usual.
    let fuzzing = std::thread::current().id();
    let previous: Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> = Arc::from(std::panic::take_hook());
    let forward = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != fuzzing {
            forward(info);
        }
    }));
    let mut failures = Vec::new();

    let project_files = vec![
        repository_file("tidemark.yml"),
        "name: p\nversion: '1'\nprofile: p\nmodels:\n  p:\n    +materialized: view\n    staging:\n      +tags: [a]\nvars:\n  x: 1\n".to_string(),
    ];
    failures.extend(report(
        "project file",
        fuzz("project file", &project_files, |text| {
            let _ = crate::project::project_file::parse("tidemark.yml", text);
        }),
    ));

    let property_files: Vec<String> = example_files("models", "yml")
        .into_iter()
        .chain(example_files("tests/fixtures/dbt_features", "yml"))
        .collect();
    failures.extend(report(
        "property file",
        fuzz("property file", &property_files, |text| {
            let _ = crate::project::properties::parse("models/schema.yml", text, None);
        }),
    ));

    let profiles = vec![
        repository_file("profiles.yml"),
        "p:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      warehouse: \"{{ env_var('W', 'warehouse') }}\"\n      threads: 2\n      memory_limit: 2GB\n"
            .to_string(),
    ];
    failures.extend(report(
        "profiles",
        fuzz("profiles", &profiles, |text| {
            if let Ok(rendered) = crate::jinja::render_config_text("profiles.yml", text) {
                let _ = crate::project::profiles::select_target(
                    Path::new("profiles.yml"),
                    "profiles.yml",
                    &rendered,
                    "tidemark_lms",
                    None,
                );
            }
        }),
    ));

    // The example project, loaded once: metric models, Jinja and selectors run against it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = crate::project::load(root).expect("the example project loads");
    let target = crate::project::Target::embedded_default(&project.file.profile);
    let engine = crate::template::TemplateEngine::new(&project, &target, project.file.vars.clone()).expect("templates");
    let graph = crate::graph::build(&project, &engine, &target).expect("graph");

    let metric_files: Vec<String> = example_files("models", "yml")
        .into_iter()
        .filter(|text| text.contains("metric_models:"))
        .collect();
    failures.extend(report(
        "metric models",
        fuzz("metric models", &metric_files, |text| {
            let mut project = crate::project::Project {
                property_files: Vec::new(),
                ..project.clone()
            };
            if let Ok(mut file) = crate::project::properties::parse("models/metrics.yml", text, None) {
                file.has_metric_models = true;
                project.property_files.push(file);
                let _ = crate::metrics::expand(&project, None);
            }
        }),
    ));

    let models: Vec<String> = example_files("models", "sql");
    failures.extend(report(
        "jinja model",
        fuzz("jinja model", &models, |text| {
            let _ = engine.parse("models/fuzzed.sql", text);
        }),
    ));

    let selectors: Vec<String> = [
        "+learner_engagement",
        "stg_events+",
        "2+learner_engagement_alerts+1",
        "@stg_learners",
        "tag:metric_model,resource_type:model",
        "path:models/reporting config.materialized:table",
        "learner_engagement.v1 source:* exposure:*",
        "tidemark_lms.engagement.*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let context = crate::graph::select::Context {
        state: None,
        selectors: &project.selectors,
    };
    failures.extend(report(
        "selectors",
        fuzz("selectors", &selectors, |text| {
            let _ = crate::graph::select::select(
                &graph,
                &[text.to_string()],
                &[],
                crate::graph::select::Scope::ALL,
                &context,
            );
        }),
    ));

    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
