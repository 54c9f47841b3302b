//! The Kubernetes label selector of `list?listOptions.labelSelector=`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_owned();
    common::on_server_stack(move || {
        let long = common::amplified(&text);
        for text in std::iter::once(text.as_str()).chain(long.as_deref()) {
            check(text);
        }
    });
});

fn check(text: &str) {
    if let Ok(s) = text.parse::<store::Selector>() {
        let _ = s.matches(|k| (k.len() % 2 == 0).then(|| k.to_string()));
        let _ = s.matches(|_| None);
        // What parsed prints back to the same selector.
        let printed = s.to_string();
        assert_eq!(
            printed.parse::<store::Selector>().as_ref(),
            Ok(&s),
            "{printed}"
        );
    }
}
