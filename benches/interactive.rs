//! Parse + validate + convert + serialize, for each seed example.
//!
//! One iteration is what the API does with a request body before it can be
//! queued, plus the TL serialization the sender does: `from_json`, then
//! `reply_markup()` and `to_bytes()`. Target: ≤ 5 µs median each.
//!
//! For scale, `serde_json_value` measures only parsing the same bodies into a
//! `serde_json::Value`, side by side in the same run.
//!
//! Run: `cargo bench --bench interactive`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use grammers_tl_types::Serializable;
use telegate::interactive::InteractiveRequest;

macro_rules! seeds {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/", $name, ".json")))),*]
    };
}

/// Every example of both Octopods seeds.
const SEEDS: &[(&str, &[u8])] = seeds![
    "reply_buttons",
    "reply_keyboard",
    "remove_reply_keyboard",
    "highlight_reply",
    "did_your_package_arrive",
    "whatsapp_button",
    "whatsapp_list",
];

fn parse_validate_convert_serialize(c: &mut Criterion) {
    let mut group = c.benchmark_group("interactive");
    for (name, body) in SEEDS {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let request = InteractiveRequest::from_json(black_box(body)).expect("valid seed");
                black_box(request.reply_markup().to_bytes())
            })
        });
    }
    group.finish();
}

fn serde_json_value(c: &mut Criterion) {
    let mut group = c.benchmark_group("serde_json_value");
    for (name, body) in SEEDS {
        group.bench_function(*name, |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).expect("JSON"))
        });
    }
    group.finish();
}

criterion_group!(benches, parse_validate_convert_serialize, serde_json_value);
criterion_main!(benches);
