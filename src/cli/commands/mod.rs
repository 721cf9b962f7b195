//! One file per command.

pub(super) mod clean;
#[cfg(feature = "ballista")]
pub(super) mod cluster;
pub(super) mod compile;
pub(super) mod debug;
pub(super) mod deps;
pub(super) mod docs;
pub(super) mod init;
pub(super) mod ls;
pub(super) mod operation;
pub(super) mod run;
pub(super) mod show;
pub(super) mod source;

use crate::graph::{Graph, ResourceType};

/// `Found 5 models, 2 seeds, 9 data tests, 0 unit tests, 1 source`.
pub(crate) fn project_counts(graph: &Graph) -> String {
    let count = |kind: ResourceType| graph.nodes.values().filter(|node| node.resource_type == kind).count();
    let unit_tests = graph.unit_tests.len();
    let parts = [
        (count(ResourceType::Model), "model"),
        (count(ResourceType::Seed), "seed"),
        (count(ResourceType::Test) - unit_tests, "data test"),
        (unit_tests, "unit test"),
        (count(ResourceType::Source), "source"),
    ];
    let parts: Vec<String> = parts
        .iter()
        .map(|(n, word)| {
            if *n == 1 {
                format!("1 {word}")
            } else {
                format!("{n} {word}s")
            }
        })
        .collect();
    format!("Found {}", parts.join(", "))
}
