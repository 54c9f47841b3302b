-- `/metrics` counts live workflows by namespace and phase at every scrape: a covering index
-- keeps that from reading every workflow's status.
CREATE INDEX workflows_by_phase ON workflows (namespace, phase);
