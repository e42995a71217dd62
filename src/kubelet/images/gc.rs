//! Image garbage collection: which images to remove when the image filesystem fills up. The
//! decision is the kubelet image manager's (`pkg/kubelet/images/image_gc_manager.go`): at or
//! above `imageGCHighThresholdPercent` of the filesystem used, free enough bytes to get down to
//! `imageGCLowThresholdPercent`, removing images no container uses, least recently used first,
//! never one younger than `imageMinimumGCAge`. The I/O is in `ImageService::collect_garbage`.

use std::time::Duration;

/// How often the kubelet checks (upstream's `ImageGCPeriod`).
pub const PERIOD: Duration = Duration::from_secs(5 * 60);

/// The kubelet's image GC settings; the defaults are upstream's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub min_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> GcPolicy {
        GcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(2 * 60),
        }
    }
}

/// The image filesystem's size and free space, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub capacity: u64,
    pub available: u64,
}

/// One image (all references to one image id) as the collector sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub size: u64,
    /// Unix seconds when the image was first recorded.
    pub first_seen: u64,
    /// Unix seconds of its last use (0: never).
    pub last_used: u64,
    /// A container on this node was made from it.
    pub in_use: bool,
}

/// What one pass decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub usage_percent: u64,
    pub amount_to_free: u64,
    /// Image ids to remove, in order.
    pub ids: Vec<String>,
    /// The sum of their sizes: what removing them is expected to free.
    pub planned_bytes: u64,
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcOutcome {
    pub usage_percent: u64,
    pub amount_to_free: u64,
    /// Bytes freed, counted as upstream counts them (the removed images' sizes).
    pub freed: u64,
    /// The references removed.
    pub removed: Vec<String>,
}

/// Decides which images to remove; `None` when usage is below the high threshold.
pub fn plan(usage: Usage, images: &[Candidate], policy: &GcPolicy, now: u64) -> Option<Plan> {
    if usage.capacity == 0 {
        return None;
    }
    let available = usage.available.min(usage.capacity);
    let usage_percent = 100 - available.saturating_mul(100) / usage.capacity;
    if usage_percent < u64::from(policy.high_threshold_percent) {
        return None;
    }
    let low = u64::from(policy.low_threshold_percent.min(100));
    let amount_to_free = (usage.capacity / 100 * (100 - low)
        + usage.capacity % 100 * (100 - low) / 100)
        .saturating_sub(available);
    let mut eligible: Vec<&Candidate> = images
        .iter()
        .filter(|c| !c.in_use)
        .filter(|c| {
            let last = c.first_seen.max(c.last_used);
            now.saturating_sub(last) >= policy.min_age.as_secs()
        })
        .collect();
    // Least recently used first; never used ones by age.
    eligible.sort_by_key(|c| (c.last_used, c.first_seen));
    let mut ids = Vec::new();
    let mut planned_bytes = 0u64;
    for c in eligible {
        if planned_bytes >= amount_to_free {
            break;
        }
        ids.push(c.id.clone());
        planned_bytes += c.size;
    }
    Some(Plan {
        usage_percent,
        amount_to_free,
        ids,
        planned_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, size: u64, first_seen: u64, last_used: u64, in_use: bool) -> Candidate {
        Candidate {
            id: id.into(),
            size,
            first_seen,
            last_used,
            in_use,
        }
    }

    const NOW: u64 = 1_000_000;

    #[test]
    fn below_the_high_threshold_nothing_is_removed() {
        let usage = Usage {
            capacity: 1000,
            available: 160,
        };
        let images = [image("a", 100, 0, 0, false)];
        assert_eq!(plan(usage, &images, &GcPolicy::default(), NOW), None);
    }

    #[test]
    fn unused_images_go_least_recently_used_first_down_to_the_low_threshold() {
        // 90% used: down to 80% means freeing 100 of 1000 bytes.
        let usage = Usage {
            capacity: 1000,
            available: 100,
        };
        let images = [
            image("recent", 60, 0, NOW - 1000, false),
            image("old", 60, 0, NOW - 5000, false),
            image("oldest-but-running", 500, 0, 1, true),
            image("older", 60, 0, NOW - 3000, false),
        ];
        let p = plan(usage, &images, &GcPolicy::default(), NOW).unwrap();
        assert_eq!(p.usage_percent, 90);
        assert_eq!(p.amount_to_free, 100);
        assert_eq!(p.ids, vec!["old", "older"]);
        assert_eq!(p.planned_bytes, 120);
    }

    #[test]
    fn images_younger_than_the_minimum_age_are_kept() {
        let usage = Usage {
            capacity: 100,
            available: 0,
        };
        let images = [
            image("new", 10, NOW - 60, 0, false),
            image("just-used", 10, 0, NOW - 30, false),
            image("aged", 10, NOW - 121, 0, false),
        ];
        let p = plan(usage, &images, &GcPolicy::default(), NOW).unwrap();
        assert_eq!(p.ids, vec!["aged"]);
        // Not enough to reach the low threshold: the caller reports the shortfall.
        assert_eq!(p.amount_to_free, 20);
        assert_eq!(p.planned_bytes, 10);
    }

    #[test]
    fn the_high_threshold_itself_triggers_collection() {
        let usage = Usage {
            capacity: 200,
            available: 30,
        };
        let images = [image("a", 1, 0, 0, false)];
        let p = plan(usage, &images, &GcPolicy::default(), NOW).unwrap();
        assert_eq!(p.usage_percent, 85);
        assert_eq!(p.amount_to_free, 10);
        assert_eq!(p.ids, vec!["a"]);
    }
}
