//! The proptest strategy the crate's property tests draw workflow-shaped JSON from: objects
//! keyed by the fields the checks read, holding anything.

use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::Value;

/// JSON up to 5 levels deep whose objects have only `keys` and whose leaves are null, a bool,
/// an integer, a float or one of `texts`, each of these as likely as another.
pub(crate) fn workflow_shaped(
    keys: Vec<&'static str>,
    texts: Vec<BoxedStrategy<Value>>,
) -> impl Strategy<Value = Value> {
    let keys = proptest::sample::select(keys);
    let mut leaves = vec![
        Just(Value::Null).boxed(),
        any::<bool>().prop_map(Value::from).boxed(),
        any::<i64>().prop_map(Value::from).boxed(),
        any::<f64>().prop_map(Value::from).boxed(),
    ];
    leaves.extend(texts);
    Union::new(leaves).prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}
