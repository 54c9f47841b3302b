//! What flows through a sensor: events in, calls out.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One event from an EventSource, as a sensor sees it (a CloudEvent's context and data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The EventSource's name (the CloudEvent's `source`).
    pub source: String,
    /// The event's name within it (the CloudEvent's `subject`).
    pub name: String,
    /// The EventSource's type: `resource`, `webhook`, `calendar`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique per event, and the same when the same event is produced again (a workflow's
    /// end replayed after a restart, a calendar tick): it keys the calls a firing makes.
    pub id: String,
    /// RFC 3339.
    pub time: String,
    pub data: Value,
}

impl Event {
    pub(crate) fn context(&self) -> Value {
        json!({"id": self.id, "source": self.source, "subject": self.name, "type": self.kind,
               "time": self.time, "specversion": "1.0", "datacontenttype": "application/json"})
    }
}

/// What a firing trigger does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Call {
    /// An `http` trigger's request.
    Http {
        url: String,
        method: String,
        headers: Map<String, Value>,
        body: Value,
    },
    /// An `argoWorkflow` (operation `submit`) or `k8s` (create a Workflow) trigger's workflow.
    Submit { namespace: String, workflow: Value },
    /// A `log` trigger: the events, said in the server's log.
    Log { message: String },
}
