//! The harness's output: one markdown table, courier against its anchor (etcd or a native
//! QUIC request) measured in the same sitting, ratio first.

/// Which way is better for a row's ratio.
#[derive(Clone, Copy, Debug)]
pub enum Better {
    /// Throughput: courier / anchor, higher is better.
    Higher,
    /// Latency, memory, time: courier / anchor, lower is better.
    Lower,
}

/// One measure, both sides.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured, and what the anchor did for it.
    pub measure: String,
    /// courier's figure divided by the anchor's.
    pub ratio: f64,
    /// Which way of the ratio is better.
    pub better: Better,
    /// courier's figures, as printed.
    pub courier: String,
    /// The anchor's figures, as printed.
    pub anchor: String,
}

impl Row {
    /// A row whose ratio is `courier / anchor` of the two figures given.
    pub fn new(
        measure: impl Into<String>,
        (courier_value, courier): (f64, String),
        (anchor_value, anchor): (f64, String),
        better: Better,
    ) -> Row {
        Row {
            measure: measure.into(),
            ratio: courier_value / anchor_value.max(f64::MIN_POSITIVE),
            better,
            courier,
            anchor,
        }
    }
}

/// The table, as markdown (what the README shows).
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measure | courier / anchor | courier | anchor |\n| --- | --- | --- | --- |\n",
    );
    for r in rows {
        let how = match r.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        out.push_str(&format!(
            "| {} | **{}×** ({how}) | {} | {} |\n",
            r.measure,
            crate::stats::ratio(r.ratio),
            r.courier,
            r.anchor
        ));
    }
    out
}
