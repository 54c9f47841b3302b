//! The controller's tests.

use super::contain;

#[test]
fn a_panic_is_contained_with_its_words() {
    assert_eq!(contain(|| 7), Ok(7));
    let literal = contain(|| -> u8 { panic!("engine bug") });
    let formatted = contain(|| -> u8 { panic!("node {} is gone", "n1") });
    assert_eq!(literal, Err("engine bug".into()));
    assert_eq!(formatted, Err("node n1 is gone".into()));
}
