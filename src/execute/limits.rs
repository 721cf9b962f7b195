//! The resource limits of a target, named in the error of a node that ran into one: a query that
//! needed more memory than `memory_limit` and could not spill, or whose spill files outgrew
//! `spill_limit` or the spill folder's disk.

use crate::project::Target;

/// What a session's queries may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes DataFusion's operators may hold before they spill (`memory_limit`).
    pub memory: u64,
    /// Whether `memory_limit` was set, or is the default share of the machine's memory.
    pub memory_set: bool,
    /// Bytes of spill files at once (`spill_limit`), when set.
    pub spill: Option<u64>,
    /// Where spill files go (`spill_dir`, else the system temp folder).
    pub spill_dir: String,
}

impl Limits {
    pub fn of(target: &Target, memory: u64) -> Limits {
        Limits {
            memory,
            memory_set: target.memory_limit.is_some(),
            spill: target.spill_limit,
            spill_dir: target
                .spill_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .display()
                .to_string(),
        }
    }

    /// `message` (a node's error) with the limit it ran into named, when it ran into one.
    pub fn explain(&self, message: String) -> String {
        let lower = message.to_ascii_lowercase();
        let memory = if self.memory_set {
            format!("memory_limit: {}", bytes(self.memory))
        } else {
            format!(
                "the default memory_limit, {} (60% of this machine's memory)",
                bytes(self.memory)
            )
        };
        let hint = if lower.contains("spilling process has exceeded") || lower.contains("max_temp_directory_size") {
            let limit = self.spill.map(bytes).unwrap_or_else(|| "100 GiB".into());
            format!(
                "the query's spill files outgrew spill_limit ({limit}) in {}: raise the target's spill_limit, or give the query less to hold (filter earlier, aggregate before joining)",
                self.spill_dir
            )
        } else if lower.contains("no space left on device") || lower.contains("disk quota exceeded") {
            format!(
                "the disk of the spill folder {} is full: point the target's spill_dir at a disk with room for the query's largest sort or join, or set spill_limit below the free space",
                self.spill_dir
            )
        } else if lower.contains("resources exhausted") {
            format!(
                "the query needed more memory than the target allows ({memory}) in an operator that cannot spill, or spilled and still ran short: raise memory_limit, or run fewer operators side by side in it (threads:, and options: datafusion.execution.target_partitions)"
            )
        } else {
            return message;
        };
        format!("{message}\nhint: {hint}")
    }
}

/// Without a configured limit, the engine may use 60% of the machine's memory before spilling.
pub(super) fn default_memory_limit() -> u64 {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let system =
        System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()));
    let total = match system.total_memory() {
        0 => 8 << 30,
        bytes => bytes,
    };
    total / 10 * 6
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            memory: 16 << 20,
            memory_set: true,
            spill: Some(1 << 20),
            spill_dir: "/spill".into(),
        }
    }

    #[test]
    fn each_limit_is_named_in_the_error_it_causes() {
        let memory =
            limits().explain("Resources exhausted: Failed to allocate additional 2.0 MB for ExternalSorter".into());
        assert!(memory.ends_with("hint: the query needed more memory than the target allows (memory_limit: 16.0 MiB) in an operator that cannot spill, or spilled and still ran short: raise memory_limit, or run fewer operators side by side in it (threads:, and options: datafusion.execution.target_partitions)"), "{memory}");
        let spill = limits().explain("Resources exhausted: The used disk space during the spilling process has exceeded the allowable limit of 1.0 MB.".into());
        assert!(
            spill.contains("spill files outgrew spill_limit (1.0 MiB) in /spill"),
            "{spill}"
        );
        let full = limits().explain("IO error: No space left on device (os error 28)".into());
        assert!(full.contains("the disk of the spill folder /spill is full"), "{full}");
        assert_eq!(limits().explain("column x not found".into()), "column x not found");
    }
}
